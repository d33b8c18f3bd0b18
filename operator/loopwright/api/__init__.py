"""API models of the loopwright.dev/v1alpha1 custom resources.

One module per kind (spec and status), shared pieces in :mod:`common`, and the
kind registry in :mod:`kinds`. The CRDs in crds/ are generated from these models.
"""
