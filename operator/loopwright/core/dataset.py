"""Dataset versions: when to profile, the profiling Job's identity, the status after a profile.

The operator polls only a cheap fingerprint of the source (``storage.fingerprint``: keys, ETags
and sizes). A new fingerprint, or a spec change (new schema or gates), means a new profile: the
profiling Job is named after both, so a restart finds the same Job and one profile is never run
twice. The content digest computed by the Job is the version; the fingerprint is only a hint.

``status.sourceFingerprint`` holds that profile key (the source's fingerprint combined with the
spec fields the profile depends on), so "is the status current?" is one comparison, and
``observedGeneration`` can follow every reconcile (kstatus reads it) without meaning "profiled".

The fingerprint is read with the credentials of ``spec.source.credentialsSecretRef`` when the
Dataset names a Secret, else with the operator's own; a failure names whichever was used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loopwright import storage
from loopwright.api.dataset import Anomaly, DatasetSpec, DatasetStatus, DatasetVersionRecord
from loopwright.api.names import child_name
from loopwright.core.conditions import READY, Event, Verdict
from loopwright.storage import CredentialsError

VALIDATED = "Validated"
HISTORY_LIMIT = 10
ANOMALY_LIMIT = 100


@dataclass(frozen=True, kw_only=True)
class Applied:
    """The status fields to write after a profile, with the events worth posting."""

    status: dict[str, Any]
    verdicts: list[Verdict]
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Failure:
    """Why the source could not be checked: the conditions to publish and the Warning to post once."""

    verdicts: list[Verdict]
    event: Event


def source_failure(error: CredentialsError | storage.StorageError, *, secret: str | None) -> Failure:
    """The verdicts for a fingerprint check that failed, naming the credentials it used (``secret``).

    Only a missing source says anything about the data (Validated=False); the other failures
    leave Validated as it was, since the last verdict on the data still holds.
    """
    if isinstance(error, CredentialsError):
        reason, message = error.reason, str(error)
    else:
        whose = f"the credentials of Secret {secret}" if secret else "the operator's own credentials"
        reason = "SourceUnreachable"
        if isinstance(error, storage.ObjectNotFoundError):
            reason = "SourceNotFound"
        elif isinstance(error, storage.AccessDeniedError):
            reason = "AccessDenied"
        message = f"{error} (read with {whose})"
    verdicts = [Verdict(type=READY, status=False, reason=reason, message=message)]
    if reason == "SourceNotFound":
        verdicts.insert(0, Verdict(type=VALIDATED, status=False, reason=reason, message=message))
    return Failure(verdicts=verdicts, event=Event(type="Warning", reason=reason, message=message))


def profile_key(*, fingerprint: str, spec: DatasetSpec) -> str:
    """Identity of one profile: the source's fingerprint and every spec field the profiler reads."""
    relevant = {"source": spec.source.to_wire(), "schema": spec.schema_.to_wire(),
                "validation": spec.validation.to_wire()}
    text = fingerprint + json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def profile_job_name(dataset: str, key: str) -> str:
    return child_name(dataset, f"profile-{key[:10]}")


def output_prefix(*, bucket: str, namespace: str, dataset: str, key: str) -> str:
    return f"s3://{bucket}/datasets/{namespace}/{dataset}/{key}"


def up_to_date(status: DatasetStatus, *, key: str) -> bool:
    """Whether the status already describes this content under this spec (``key``: profile_key)."""
    return status.source_fingerprint == key


def apply_result(
    status: DatasetStatus,
    result: Mapping[str, Any],
    *,
    key: str,
    generation: int | None,
    now: datetime,
) -> Applied:
    """The Dataset status after the profiler's ``result.json``: version, anomalies, history, verdicts.

    An invalid version becomes the latest version with every anomaly listed, but never the
    validated one: pipelines keep training on ``validatedVersion``.
    """
    digest = result.get("digest")
    anomalies = [Anomaly.model_validate(a) for a in result.get("anomalies") or ()]
    valid = bool(result.get("valid")) and not anomalies and digest is not None
    rows = int(result.get("rows") or 0)
    profile_uri = result.get("profileUri")
    update: dict[str, Any] = {
        "sourceFingerprint": key,
        "observedGeneration": generation,
        "lastCheckedTime": _stamp(now),
        "rows": rows,
        "profileUri": profile_uri,
        "anomalies": [a.to_wire() for a in anomalies[:ANOMALY_LIMIT]],
        "version": digest,
        "shortVersion": digest.removeprefix("sha256:")[:12] if digest else None,
        "validatedVersion": digest if valid else status.validated_version,
    }
    history = list(status.history)
    if digest is not None:
        seen = next((r for r in history if r.version == digest), None)
        record = DatasetVersionRecord(version=digest, rows=rows, validated=valid, profile_uri=profile_uri,
                                      observed_time=seen.observed_time if seen else now)
        history = [record, *(r for r in history if r.version != digest)][:HISTORY_LIMIT]
    update["history"] = [r.to_wire() for r in history]

    events: list[Event] = []
    short = update["shortVersion"] or "unreadable"
    if valid:
        verdicts = [Verdict(type=VALIDATED, status=True, reason="Valid",
                            message=f"version {short}: {rows} rows, no anomalies"),
                    Verdict(type=READY, status=True, reason="Validated",
                            message=f"validated version {short}")]
        if digest != status.validated_version:
            events.append(Event(type="Normal", reason="NewVersion",
                                message=f"validated new version {short} ({rows} rows)"))
    else:
        summary = "; ".join(_describe(a) for a in anomalies) or "the profiler found no usable digest"
        verdicts = [Verdict(type=VALIDATED, status=False, reason="AnomaliesFound",
                            message=f"version {short}: {len(anomalies)} anomalies: {summary}"[:4000]),
                    Verdict(type=READY, status=False, reason="InvalidData",
                            message=f"latest version {short} is invalid and will not train"
                                    + (f"; pipelines keep {status.validated_version}"
                                       if status.validated_version else ""))]
        events.append(Event(type="Warning", reason="ValidationFailed",
                            message=f"version {short}: {summary}"[:1024]))
    return Applied(status=update, verdicts=verdicts, events=events)


def _describe(anomaly: Anomaly) -> str:
    where = f"{anomaly.column}: " if anomaly.column else ""
    count = f" ({anomaly.count})" if anomaly.count is not None else ""
    return f"{anomaly.kind}{count} {where}{anomaly.message}"


def _stamp(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
