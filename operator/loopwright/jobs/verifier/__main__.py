"""The artifact verification Job: ``loopwright-verifier --uri U --sha256 H``.

Proves what a ModelVersion claims about its artifact before it can be Validated: the object
exists, is no larger than ``--max-bytes``, has the recorded sha256, and loads with the fixed
trusted-type list of :mod:`loopwright.artifacts` (pickle is never loaded).

Exit codes: 0 verified; 3 the artifact is rejected (missing, too large, wrong sha256, not skops,
untrusted types: retrying cannot help); 1 infrastructure failure. The one-line JSON summary
(``verified``, ``error``, ``message``, ``bytes``) is left as the termination message.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loopwright import artifacts, storage
from loopwright.jobs import contract as _job

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loopwright-verifier", description="Verify an artifact.")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    args = parser.parse_args(argv)

    def rejected(error: str, message: str) -> int:
        return _job.finish({"verified": False, "error": error, "message": message}, code=_job.EXIT_BAD_DATA)

    try:
        size = storage.head(args.uri).size
        if size > args.max_bytes:
            return rejected("TooLarge", f"{args.uri} is {size} bytes, more than the {args.max_bytes} allowed")
        artifacts.loads(storage.get_bytes(args.uri), sha256=args.sha256)
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
    return _job.finish({"verified": True, "bytes": size, "message": f"{args.uri}: sha256 matches, "
                        "loads with trusted types"}, code=_job.EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
