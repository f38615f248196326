"""Host side of the device harness: protocol, pyserial transports, backends, farm, pytest plugin.

Nothing here imports TensorFlow: device commands start fast.
"""
