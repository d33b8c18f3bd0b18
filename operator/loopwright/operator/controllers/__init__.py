"""kopf handlers, one module per kind. Importing this package registers them all."""

from loopwright.operator.controllers import dataset, deployment, driftpolicy, modelversion, pipeline

__all__ = ["dataset", "deployment", "driftpolicy", "modelversion", "pipeline"]
