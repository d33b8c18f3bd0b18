"""The Jobs the operator starts, one package each, sharing :mod:`.contract` (exit codes, results).

* :mod:`.profiler`: a Dataset version's digest, profile and anomalies (``loopwright-profiler``);
* :mod:`.trainer`: one training run (``loopwright-trainer``);
* :mod:`.verifier`: checks a registered artifact before it is served (``loopwright-verifier``);
* :mod:`.compactor`: captured traffic joined with labels as new data (``loopwright-compactor``).
"""
