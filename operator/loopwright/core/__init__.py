"""The I/O-free core: what the loop decides, as pure functions of plain values.

Profiles, conditions, the estimator allow-list, Dataset versions, training runs and their
gates, the canary state machine with its analysis, and drift statistics. Nothing here talks to
the cluster, to S3 or to the network, and nothing imports kopf, boto3 or scikit-learn; the
operator, the Jobs and the prediction server call into it.
"""
