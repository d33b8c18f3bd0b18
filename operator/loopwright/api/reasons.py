"""Reasons of conditions and Events, defined once: controllers, tests and the Argo CD health check
(which reads the Stalled condition derived from :data:`STALLED`, :mod:`loopwright.api.argocd`) share them.

A reason is a CamelCase word for machines (``kubectl wait``, Argo CD, alerts); the message beside
it is for people. Argo Rollouts keeps its reasons the same way (``utils/conditions``).
"""

from __future__ import annotations

# -- every kind -----------------------------------------------------------------------------------------
INVALID_SPEC = "InvalidSpec"
NOT_IMPLEMENTED = "NotImplemented"
READY = "Ready"
VALID = "Valid"

# -- Dataset --------------------------------------------------------------------------------------------
CHECKING = "Checking"
PROFILING = "Profiling"
PROFILING_FAILED = "ProfilingFailed"
RESULT_UNREADABLE = "ResultUnreadable"
INVALID_DATA = "InvalidData"
SOURCE_NOT_FOUND = "SourceNotFound"
SOURCE_UNREACHABLE = "SourceUnreachable"
ACCESS_DENIED = "AccessDenied"
CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
CREDENTIALS_INVALID = "CredentialsInvalid"
CREDENTIALS_FORBIDDEN = "CredentialsForbidden"

# -- TrainingPipeline -----------------------------------------------------------------------------------
DATASET_NOT_FOUND = "DatasetNotFound"
WAITING_FOR_DATA = "WaitingForData"
REFUSED = "Refused"
JOB_REFUSED = "JobRefused"
RUN_ACTIVE = "RunActive"
IDLE = "Idle"
RUN_STARTED = "RunStarted"
RUN_SUCCEEDED = "RunSucceeded"
RUN_FAILED = "RunFailed"

# -- ModelVersion ---------------------------------------------------------------------------------------
VERIFYING = "Verifying"
VERIFIED = "Verified"
VERIFICATION_FAILED = "VerificationFailed"
ARTIFACT_REJECTED = "ArtifactRejected"
VALIDATED = "Validated"
REJECTED = "Rejected"

# -- Deployment -----------------------------------------------------------------------------------------
MODEL_LOAD_FAILED = "ModelLoadFailed"
MODEL_VERSION_MISSING = "ModelVersionMissing"

# -- DriftPolicy ----------------------------------------------------------------------------------------
PENDING = "Pending"
NOT_SERVING = "NotServing"
PROFILE_UNAVAILABLE = "ProfileUnavailable"
REFERENCE_CHANGED = "ReferenceChanged"
RETRAIN_REQUESTED = "RetrainRequested"
RETRAIN_FAILED = "RetrainFailed"
REPORT_FAILED = "ReportFailed"
WEBHOOK_FAILED = "WebhookFailed"

STALLED = frozenset({
    # the spec: refused at reconcile (the schema admitted it) or naming what cannot be served
    INVALID_SPEC, REFUSED, "NotServable",
    # the data or the artifact: another version, not waiting, cures it
    "InvalidData", "ProfilingFailed", "SourceNotFound", "VerificationFailed", "ValidationFailed",
    "ChecksFailed", "ArtifactRejected",
    # credentials a human must create or fix
    "CredentialsNotFound", "CredentialsInvalid", "CredentialsForbidden", "AccessDenied",
    # a rollout that ended without the version it was asked for
    "RolledBack", "Aborted", "GatewayAPIUnavailable",
    # the served version's ModelVersion deleted: re-register it or serve another
    MODEL_VERSION_MISSING,
})
"""Reasons of a Ready=False or Degraded=True condition that waiting cannot cure (kstatus Stalled,
Argo CD Degraded; :func:`loopwright.core.conditions.health`). Any other Ready=False reason is work
in progress (Reconciling)."""
