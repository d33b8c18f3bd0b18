"""The Dataset profiling Job (``loopwright-profiler``)."""
