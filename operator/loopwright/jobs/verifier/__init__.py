"""The artifact verification Job (``loopwright-verifier``)."""
