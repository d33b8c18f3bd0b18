"""``kubectl loopwright report <object>``: save or open the HTML report an object points at.

* ``dp/<policy>``: the drift report of the last check with a verdict; ``--retrain``: of the
  check that requested the last retrain.
* ``mv/<version>``, ``run/<run>``, ``mlp/<pipeline>`` (its latest run): the training report.

Reports live in S3 next to the artifacts; the plugin reads them with the user's own S3
credentials (the AWS environment or ~/.aws), as the AWS CLI would.
"""

from __future__ import annotations

import tempfile
import webbrowser
from pathlib import Path

from loopwright.api import names
from loopwright.cli.errors import CliError
from loopwright.cli.fmt import Obj, dig, name

RUN = "run"


def kind_named(word: str) -> names.KindName | None:
    """The kind a kubectl-style word names (``dp``, ``driftpolicy``, ``driftpolicies``...)."""
    word = word.lower().split(".", 1)[0]
    return next((k for k in names.ALL if word in (k.singular, k.plural, *k.short_names)), None)


def parse_target(text: str) -> tuple[str, str]:
    """``kind/name`` -> (``dp``-style word, name)."""
    kind, _, target = text.partition("/")
    if not target or (kind.lower() != RUN and kind_named(kind) is None):
        raise CliError(f"report needs KIND/NAME, e.g. dp/churn (drift), mv/churn-v3, run/churn-3 or "
                       f"mlp/churn (training), not {text!r}")
    return kind.lower(), target


def uri_of(kind: str, obj: Obj, *, retrain: bool, run: str | None = None) -> tuple[str, str]:
    """The report's URI and what it is, from an object's status (or spec, for a ModelVersion)."""
    found = kind_named(kind) if kind != RUN else names.TRAINING_PIPELINE
    if found == names.DRIFT_POLICY:
        status = obj.get("status") or {}
        if retrain:
            uri = status.get("lastRetrainReportUri")
            if not uri:
                raise CliError(f"DriftPolicy {name(obj)} has not requested a retrain with a report yet")
            token = status.get("lastRetrainRun")
            return str(uri), f"drift report of the check that requested retrain {token}"
        if not status.get("reportUri"):
            raise CliError(f"DriftPolicy {name(obj)} has no report yet: reports are written by checks with "
                           "enough samples for a verdict")
        return str(status["reportUri"]), f"drift report of the check at {status.get('reportTime', '?')}"
    if retrain:
        raise CliError("--retrain applies to a DriftPolicy (dp/NAME)")
    if found == names.MODEL_VERSION:
        uri = dig(obj, "spec", "reportUri")
        if not uri:
            raise CliError(f"ModelVersion {name(obj)} has no training report (trained before reports "
                           "existed, or registered by hand)")
        return str(uri), f"training report of {name(obj)}"
    if found == names.TRAINING_PIPELINE:
        runs = dig(obj, "status", "runs") or []
        wanted = run or dig(obj, "status", "lastRun")
        record = next((r for r in runs if r.get("name") == wanted), None)
        if record is None:
            raise CliError(f"TrainingPipeline {name(obj)} has no run {wanted or 'yet'}")
        if not record.get("reportUri"):
            raise CliError(f"run {wanted} has no report ({record.get('phase')}"
                           f"{': ' + str(record.get('reason')) if record.get('reason') else ''})")
        return str(record["reportUri"]), f"training report of run {wanted}"
    raise CliError(f"{kind} objects have no report: use dp/NAME, mv/NAME, run/NAME or mlp/NAME")


def fetch(uri: str) -> bytes:
    from loopwright import storage  # noqa: PLC0415 (boto3 only when a report is read)

    try:
        return storage.get_bytes(uri)
    except storage.StorageError as exc:
        raise CliError(f"cannot read {uri}: {exc} (reports are read with your S3 credentials: AWS_* "
                       "environment or ~/.aws, and AWS_ENDPOINT_URL for MinIO)") from exc


def save(data: bytes, *, uri: str, file: str | None, open_it: bool) -> Path:
    """Write the report where asked (default: the current directory, or a temp dir to open it)."""
    base = uri.rstrip("/").rsplit("/", 2)
    default = "-".join(part for part in base[-2:] if part)
    if file:
        path = Path(file)
    elif open_it:
        path = Path(tempfile.mkdtemp(prefix="loopwright-report-")) / default
    else:
        path = Path.cwd() / default
    path.write_bytes(data)
    if open_it and not webbrowser.open(path.resolve().as_uri()):
        raise CliError(f"saved {path}, but no browser could be opened here")
    return path
