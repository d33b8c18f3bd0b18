"""Canary rollouts of the Deployment kind, one module per concern (as Argo Rollouts splits them).

* :mod:`.canary`: the state machine (phases, steps, promotion, rollback), pure.
* :mod:`.analysis`: verdicts from the predictors' metric windows, pure.
* :mod:`.traffic`: how a desired weight becomes replicas or HTTPRoute weights, pure.

All rollout state lives in the object's status, so the controller around them is
stateless and an operator restart resumes exactly where it stopped.
"""
