"""The artifact verification Job (``python -m loopwright.verifier``)."""
