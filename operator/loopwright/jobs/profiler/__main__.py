"""The Dataset profiling Job: ``loopwright-profiler``.

Reads one version of a Dataset, computes its content digest, validates it
against the declared schema, and writes under ``--output-prefix``:

* ``profile.json``: the reference :class:`~loopwright.core.profile.Profile` of the
  features and the label (absent when nothing could be parsed);
* ``result.json``: ``digest``, ``rows``, ``objects``, ``bytes``, ``columns``
  (per-column statistics), ``anomalies``, ``valid``, ``profileUri``,
  ``profileSha256``.

Invalid data is a result, not a failure: the exit code is 0 and ``valid`` is
false. Exit codes: 0 done (valid or not), 1 infrastructure failure (storage),
2 unusable arguments. The same summary is printed on one line and left as the
termination message.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from loopwright import storage
from loopwright.api.dataset import Anomaly, DataFormat, DatasetValidation
from loopwright.api.schema import DatasetSchema, TaskType
from loopwright.core.profile import Profile
from loopwright.jobs import contract as _job
from loopwright.jobs import data


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="loopwright-profiler", description="Profile a Dataset.")
    parser.add_argument("--source-uri", required=True, help="s3://bucket/key, s3://bucket/prefix/ or a path")
    parser.add_argument("--format", choices=[f.value for f in DataFormat], default=DataFormat.CSV.value)
    parser.add_argument("--schema-json", required=True, help="the Dataset's spec.schema (wire form)")
    parser.add_argument("--validation-json", default="{}", help="the Dataset's spec.validation")
    parser.add_argument("--output-prefix", required=True, help="where profile.json and result.json go")
    parser.add_argument("--max-bytes", type=int, default=data.MAX_BYTES,
                        help="a larger version is a TooLarge anomaly, and is not read")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    try:
        schema = DatasetSchema.model_validate_json(args.schema_json)
        rules = DatasetValidation.model_validate_json(args.validation_json)
    except ValidationError as exc:
        return _job.finish({"error": "BadParameters", "message": str(exc)}, code=_job.EXIT_BAD_PARAMETERS)

    result: dict[str, Any] = {
        "digest": None, "rows": 0, "columns": {}, "profileUri": None, "profileSha256": None,
    }
    anomalies: list[Anomaly] = []
    try:
        raw = data.fetch(args.source_uri, max_bytes=args.max_bytes)
    except storage.ObjectNotFoundError as exc:
        raw = None
        anomalies.append(Anomaly(kind=data.AnomalyKind.UNREADABLE, message=str(exc)))
    except data.DataError as exc:
        raw = None
        anomalies.append(exc.anomaly)
    if raw is not None:
        result.update(digest=raw.digest, objects=len(raw.parts), bytes=raw.size)
        try:
            frame = data.parse(raw, fmt=args.format, schema=schema)
        except data.DataError as exc:
            anomalies.append(exc.anomaly)
        else:
            report = data.validate(frame, schema, rules)
            anomalies.extend(report.anomalies)
            frame = data.normalise(frame, schema)
            features, label = data.profile_columns(frame, schema)
            classes = label.categories if label is not None and label.kind == "categorical" else None
            profile = Profile(
                rows=len(frame),
                features=features,
                label=label,
                dataset_schema=schema,
                task=TaskType(schema.label.task),
                classes=classes if schema.label.task == TaskType.CLASSIFICATION else None,
            )
            profile_uri = storage.join_uri(args.output_prefix, "profile.json")
            result.update(
                rows=len(frame),
                columns={name: stats.to_wire() for name, stats in report.columns.items()},
                profileUri=profile_uri,
                profileSha256=_job.write_json(profile_uri, profile.to_wire()),
            )
    result["anomalies"] = [a.to_wire() for a in anomalies]
    result["valid"] = not anomalies
    result_uri = storage.join_uri(args.output_prefix, "result.json")
    result_sha = _job.write_json(result_uri, result)
    summary = {
        "valid": result["valid"],
        "digest": result["digest"],
        "rows": result["rows"],
        "resultUri": result_uri,
        "resultSha256": result_sha,
        "profileUri": result["profileUri"],
        "profileSha256": result["profileSha256"],
        "anomalies": result["anomalies"],
    }
    return _job.finish(summary, code=_job.EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        return run(args)
    except storage.StorageError as exc:
        return _job.finish({"error": "StorageError", "message": str(exc)}, code=_job.EXIT_FAILED)
    except Exception as exc:  # the traceback goes to the log, the reason to the summary
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        return _job.finish({"error": "Failed", "message": message}, code=_job.EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
