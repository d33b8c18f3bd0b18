"""The artifact verification Job: ``loopwright-verifier --uri U --sha256 H [--compiled-uri ...]``.

Proves what a ModelVersion claims about its artifact before it can be Validated: the object
exists, is no larger than ``--max-bytes``, has the recorded sha256, and loads with the fixed
trusted-type list of :mod:`loopwright.artifacts` plus the ModelVersion's declared
``--trusted-type`` ones (a factory's own types; never a module that runs code): a file asking for
any other type is rejected (``UntrustedTypes``) before anything of it is loaded. Pickle is never
loaded. For a factory's model the Job runs the team's image, which holds the types' code.

With ``--compiled-uri``/``--compiled-sha256`` and ``--holdout-uri``/``--holdout-sha256`` it also
checks the compiled form against the skops model on the hold-out rows
(:mod:`loopwright.compiled.agreement`) and reports ``compiled``: ``passed``, ``rows``,
``agreeing``, ``maxProbaDifference``, ``message``. A compiled form that is missing, corrupt or
answers differently fails that check only (it will not serve); the skops artifact stands.

Exit codes: 0 verified; 3 the artifact is rejected (missing, too large, wrong sha256, not skops,
untrusted types: retrying cannot help); 1 infrastructure failure. The one-line JSON summary
(``verified``, ``error``, ``message``, ``bytes``, ``compiled``) is left as the termination message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from loopwright import artifacts, storage
from loopwright.compiled import container, rows
from loopwright.compiled.agreement import compare
from loopwright.compiled.program import Program, ProgramError
from loopwright.jobs import contract as _job

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loopwright-verifier", description="Verify an artifact.")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--trusted-type", action="append", default=[], dest="trusted_types",
                        help="a type the model declares beyond the built-in list (repeatable)")
    parser.add_argument("--compiled-uri", help="the compiled model to check against the artifact")
    parser.add_argument("--compiled-sha256")
    parser.add_argument("--holdout-uri", help="the hold-out rows to check it on")
    parser.add_argument("--holdout-sha256")
    args = parser.parse_args(argv)
    compiled_args = (args.compiled_uri, args.compiled_sha256, args.holdout_uri, args.holdout_sha256)
    if any(compiled_args) and not all(compiled_args):
        parser.error("--compiled-uri, --compiled-sha256, --holdout-uri and --holdout-sha256 go together")

    def rejected(error: str, message: str) -> int:
        return _job.finish({"verified": False, "error": error, "message": message}, code=_job.EXIT_BAD_DATA)

    try:
        size = storage.head(args.uri).size
        if size > args.max_bytes:
            return rejected("TooLarge", f"{args.uri} is {size} bytes, more than the {args.max_bytes} allowed")
        model = artifacts.loads(storage.get_bytes(args.uri), sha256=args.sha256, extra=args.trusted_types)
        compiled = _check_compiled(model, args) if args.compiled_uri else None
    except storage.ObjectNotFoundError as exc:
        return rejected("NotFound", str(exc))
    except storage.IntegrityError as exc:
        return rejected("DigestMismatch", str(exc))
    except artifacts.UntrustedTypesError as exc:
        return rejected("UntrustedTypes", str(exc))
    except artifacts.ArtifactError as exc:
        return rejected("Unloadable", str(exc))
    except storage.StorageError as exc:
        return _job.finish({"verified": False, "error": "StorageError", "message": str(exc)},
                           code=_job.EXIT_FAILED)
    summary: dict[str, Any] = {"verified": True, "bytes": size,
                               "message": f"{args.uri}: sha256 matches, loads with trusted types"}
    if compiled is not None:
        summary["compiled"] = compiled
    return _job.finish(summary, code=_job.EXIT_OK)


def _check_compiled(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The compiled model against ``model`` on the hold-out rows (storage failures propagate)."""
    try:
        program = Program.loads(storage.get_bytes(args.compiled_uri), sha256=args.compiled_sha256)
        held = rows.loads(storage.get_bytes(args.holdout_uri), sha256=args.holdout_sha256)
        program.bind(held.numeric_names, list(held.categorical))
    except storage.ObjectNotFoundError as exc:
        return {"passed": False, "error": "NotFound", "message": str(exc)}
    except storage.IntegrityError as exc:
        return {"passed": False, "error": "DigestMismatch", "message": str(exc)}
    except (container.ContainerError, ProgramError) as exc:
        return {"passed": False, "error": "Malformed", "message": str(exc)}
    try:
        agreement = compare(program, model, columns=held.columns, numeric_names=held.numeric_names,
                            numeric=held.numeric, categorical=held.categorical)
    except Exception as exc:  # e.g. a hold-out row the compiled form cannot take: not identical
        return {"passed": False, "error": "Failed", "message": f"{type(exc).__name__}: {exc}"}
    return {"passed": agreement.passed, "rows": agreement.rows, "agreeing": agreement.agreeing,
            "maxProbaDifference": agreement.max_proba_difference,
            "message": f"{args.compiled_uri} on the hold-out rows: {agreement.describe()}"}


if __name__ == "__main__":
    sys.exit(main())
