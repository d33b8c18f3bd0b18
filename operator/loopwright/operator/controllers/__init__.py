"""kopf handlers, one module per kind. Importing this package registers them all."""

from loopwright.operator.controllers import (
    analysistemplate,
    dataset,
    deployment,
    driftpolicy,
    modelversion,
    pipeline,
)

__all__ = ["analysistemplate", "dataset", "deployment", "driftpolicy", "modelversion", "pipeline"]
