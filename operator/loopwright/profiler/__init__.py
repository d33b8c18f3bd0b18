"""The Dataset profiling Job (run as ``python -m loopwright.profiler``)."""
