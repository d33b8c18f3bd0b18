"""The operator: the kopf process that watches the five kinds and converges their children.

Controllers read the cluster, call the pure core (:mod:`loopwright.core`) and apply what it
decided; builders turn decisions into manifests; probes read what predictors and other
endpoints report. Start it with ``loopwright-operator``.
"""
