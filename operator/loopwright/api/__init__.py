"""API models of the loopwright.dev/v1alpha1 custom resources."""
