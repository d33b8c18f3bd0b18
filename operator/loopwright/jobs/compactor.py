"""Captured traffic joined with its labels, written as a new Dataset version (the loop's data path).

The predictor samples requests to S3 (``LOOPWRIGHT_CAPTURE_URI``, set from the
Deployment's ``capture.fraction``) under
``s3://{bucket}/captures/{namespace}/{deployment}/{pod}/``:

* ``{unix_ms}.jsonl``: one ``{"id", "ts", "features": {...}, "prediction"}`` per captured row;
* ``{unix_ms}.labels.jsonl``: one ``{"id", "ts", "label"}`` per label the feedback
  endpoint matched (for any prediction, captured or not).

:func:`compact` joins the two on the prediction id (ids are unique across pods
and restarts: they start with a random per-process prefix), keeps the rows that
have a label, and writes them as one CSV object with a header: the feature
columns in schema order, then the label column. Written under the prefix of a
Dataset whose ``source.uri`` is a prefix, it adds an object, so the Dataset's
next refresh sees a new fingerprint, profiles and validates the new version
(the old objects plus this one), and a pipeline with ``triggers.onNewData``
trains on it. Written over the object of a Dataset whose ``source.uri`` is one
object, it replaces the data instead: the next version is the recent traffic
alone. Choose by what the world did: appending keeps the old rows, so the new
reference profile mixes old and new (after a lasting shift, the live traffic may
still drift against that mixture); replacing trains, and measures drift, on the
new distribution only (tests/e2e/test_loop.py does this). The Dataset's
validation applies as for any other data: captured rows never bypass it.

Run it where S3 credentials are available, e.g. as a Job with the trainer image::

    loopwright-compactor \\
        --captures s3://loopwright/captures/default/iris/ \\
        --profile  s3://loopwright/models/default/iris/runs/iris-1/profile.json \\
        --output   s3://datasets/iris/captured-$(date +%s).csv [--since-ms 1767268800000]

``--profile`` (the served ModelVersion's ``spec.profileUri``) supplies the
schema: feature order and label column; ``--columns``/``--label`` can be given
instead. ``--since-ms`` keeps only rows predicted since then (e.g. since the
last compaction, or since a drift began); labels are matched whenever they came.
Exit codes: 0 written, 1 nothing labelled to write, 2 bad arguments or storage error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from loopwright import storage
from loopwright.core.profile import Profile

ROWS_SUFFIX = ".jsonl"
LABELS_SUFFIX = ".labels.jsonl"


@dataclass(frozen=True, kw_only=True)
class Joined:
    """Labelled rows ready to write, and what could not be used."""

    rows: list[dict[str, Any]]
    """``{"features": {...}, "label": ...}`` in capture order."""
    unlabelled: int
    """Captured rows without a label (yet)."""
    orphan_labels: int
    """Labels of predictions that were not captured (sampling) or are not in these objects."""
    malformed: int
    """Lines that are not a JSON object with the expected fields."""


@dataclass(frozen=True, kw_only=True)
class Result:
    uri: str | None
    sha256: str | None
    joined: Joined
    objects: int


def join(row_lines: Iterable[bytes], label_lines: Iterable[bytes], *, since_ms: int | None = None) -> Joined:
    """Join captured rows with labels on the prediction id (the first label of an id wins).

    ``since_ms`` keeps only rows predicted at or after that time (their ``ts``), so traffic from
    before a change, flushed in the same object as traffic after it, stays out.
    """
    malformed = 0
    labels: dict[str, Any] = {}
    for line in label_lines:
        doc = _parse(line)
        if doc is None or not isinstance(doc.get("id"), str) or "label" not in doc:
            malformed += int(bool(line.strip()))
            continue
        labels.setdefault(doc["id"], doc["label"])
    rows: list[dict[str, Any]] = []
    unlabelled = 0
    used: set[str] = set()
    for line in row_lines:
        doc = _parse(line)
        if doc is None or not isinstance(doc.get("id"), str) or not isinstance(doc.get("features"), dict):
            malformed += int(bool(line.strip()))
            continue
        if since_ms is not None and not (isinstance(doc.get("ts"), int) and doc["ts"] >= since_ms):
            continue
        pid = doc["id"]
        if pid not in labels or pid in used:
            unlabelled += int(pid not in labels)
            continue
        used.add(pid)
        rows.append({"features": doc["features"], "label": labels[pid]})
    orphans = sum(1 for pid in labels if pid not in used)
    return Joined(rows=rows, unlabelled=unlabelled, orphan_labels=orphans, malformed=malformed)


def to_csv(rows: Sequence[dict[str, Any]], *, columns: Sequence[str], label: str) -> bytes:
    """CSV with a header; missing values as empty cells, which the Dataset reader takes as null."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*columns, label])
    for row in rows:
        features = row["features"]
        writer.writerow([_cell(features.get(c)) for c in columns] + [_cell(row["label"])])
    return buffer.getvalue().encode()


def compact(
    *, captures: str, output: str, columns: Sequence[str], label: str, since_ms: int | None = None,
) -> Result:
    """Join the rows captured under ``captures`` since ``since_ms`` with their labels; write ``output``.

    Nothing is written when no captured row has a label: an empty object would
    still change the Dataset's fingerprint and cost a profiling run for nothing.
    """
    objects = [o for o in storage.list_objects(captures) if _stamp(o.uri) is not None
               and (since_ms is None or (_stamp(o.uri) or 0) >= since_ms)]
    row_lines: list[bytes] = []
    label_lines: list[bytes] = []
    for obj in objects:
        data = storage.get_bytes(obj.uri)
        (label_lines if obj.uri.endswith(LABELS_SUFFIX) else row_lines).extend(data.splitlines())
    joined = join(row_lines, label_lines, since_ms=since_ms)
    if not joined.rows:
        return Result(uri=None, sha256=None, joined=joined, objects=len(objects))
    digest = storage.put_bytes(output, to_csv(joined.rows, columns=columns, label=label))
    return Result(uri=output, sha256=digest, joined=joined, objects=len(objects))


def schema_columns(profile: Profile) -> tuple[list[str], str]:
    """Feature columns in schema order and the label column, from a training profile."""
    schema = profile.dataset_schema
    if schema is None:
        raise ValueError("the profile carries no schema; give --columns and --label")
    return [c.name for c in schema.columns], schema.label.name


def _stamp(uri: str) -> int | None:
    """The unix-ms time in a capture object's name, or None for anything else."""
    name = uri.rsplit("/", 1)[-1]
    for suffix in (LABELS_SUFFIX, ROWS_SUFFIX):
        if name.endswith(suffix):
            head = name[: -len(suffix)]
            return int(head) if head.isdigit() else None
    return None


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loopwright-compactor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", required=True, help="capture prefix of one Deployment")
    parser.add_argument("--output", required=True, help="object to write, under the Dataset's source prefix")
    parser.add_argument("--profile", help="training profile whose schema gives columns and label")
    parser.add_argument("--columns", help="comma-separated feature columns (instead of --profile)")
    parser.add_argument("--label", help="label column name (instead of --profile)")
    parser.add_argument("--since-ms", type=int, help="keep only rows predicted at or after this unix-ms time")
    args = parser.parse_args(argv)
    try:
        if args.profile:
            columns, label = schema_columns(Profile.model_validate_json(storage.get_bytes(args.profile)))
        elif args.columns and args.label:
            columns, label = [c for c in args.columns.split(",") if c], args.label
        else:
            parser.error("give --profile, or --columns and --label")
        result = compact(captures=args.captures, output=args.output, columns=columns, label=label,
                         since_ms=args.since_ms)
    except (storage.StorageError, ValueError) as exc:
        print(f"capture: {exc}", file=sys.stderr)
        return 2
    j = result.joined
    print(json.dumps({"output": result.uri, "sha256": result.sha256, "rows": len(j.rows),
                      "unlabelled": j.unlabelled, "orphanLabels": j.orphan_labels, "malformed": j.malformed,
                      "objects": result.objects}))
    return 0 if result.uri else 1


if __name__ == "__main__":
    sys.exit(main())
