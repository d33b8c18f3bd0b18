"""Pure manifest builders: Kubernetes objects as dicts, from specs and settings, without I/O."""
