"""The training Job (run as ``python -m loopwright.trainer``)."""
