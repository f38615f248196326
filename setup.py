"""Package discovery that pyproject.toml cannot express declaratively.

The `datasets/` folder is installed as `tinyfarm_datasets`: a top-level `datasets` package would
shadow Hugging Face's `datasets`. Everything else is configured in pyproject.toml.
"""

from setuptools import find_packages, setup

packages = find_packages(include=["tinyfarm", "tinyfarm.*", "pipeline", "pipeline.*",
                                  "device_harness", "device_harness.*"])
packages += ["tinyfarm_datasets" + ("." + p if p else "")
             for p in [""] + find_packages(where="datasets")]

setup(packages=packages, package_dir={"tinyfarm_datasets": "datasets"})
