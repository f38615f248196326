"""Data sets the pipeline trains on (installed as ``tinyfarm_datasets``, not ``datasets``)."""
