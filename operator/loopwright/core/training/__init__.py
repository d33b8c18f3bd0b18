"""Pure reconcile logic of the first half of the loop: datasets, runs, triggers, registry, gates.

Nothing here talks to the cluster or to S3: the controllers read, call these functions, and apply.
"""
