"""The training Job (``loopwright-trainer``)."""
