"""Loopwright's wheelhouse: the lock of every wheel the images install, and each image's requirements.

`make lock` resolves Loopwright's runtime extras on this machine's Python (binary wheels only, so no
image ever compiles) and writes images/requirements.lock, pinned by version and sha256 (two
resolutions a quarter of an hour apart differed, hence the lock). `make images` downloads exactly
those wheels on the host, and the image build installs them with no network: first the image's
third-party requirements in a layer of their own, then Loopwright's wheel with --no-deps, so a
change to Loopwright's code rebuilds one small layer, not the virtualenv. Standard library only.

  python3 images/wheels.py lock REPORT.json LOCKFILE   (REPORT: `pip install --dry-run --report`)
  python3 images/wheels.py requirements EXTRA[,EXTRA]  -> one requirement per line
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


HEADER = """\
# Every wheel Loopwright's images install, pinned by version and sha256 (`make lock` rewrites it;
# resolved for CPython {python} on manylinux x86_64, binary wheels only).
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(report: dict[str, Any], *, skip: set[str]) -> list[tuple[str, str, str]]:
    """(name, version, sha256) of each wheel pip would install, sorted; `skip` names are left out."""
    found = []
    for item in report["install"]:
        metadata = item["metadata"]
        name = canonical(metadata["name"])
        if name in skip:
            continue
        url = item["download_info"]["url"]
        if not url.endswith(".whl"):
            raise ValueError(f"{name} {metadata['version']} resolves to a source distribution ({url}): "
                             "the images install binary wheels only")
        digest = item["download_info"]["archive_info"]["hashes"]["sha256"]
        found.append((name, metadata["version"], digest))
    return sorted(found)


def render(entries: list[tuple[str, str, str]], *, python: str) -> str:
    lines = [f"{name}=={version} --hash=sha256:{digest}" for name, version, digest in entries]
    return HEADER.format(python=python) + "\n".join(lines) + "\n"


def requirements(project: dict[str, object], extras: list[str]) -> list[str]:
    """The base dependencies plus each extra's, without references to the project itself."""
    table = project["project"]
    assert isinstance(table, dict)
    name = str(table["name"])
    optional = table.get("optional-dependencies", {})
    found = list(table.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise KeyError(f"{name} has no extra {extra!r}")
        found += [r for r in optional[extra] if not re.match(rf"{re.escape(name)}\b", r)]
    return sorted(set(found))


def main(argv: list[str]) -> int:
    command, *args = argv or [""]
    if command == "lock" and len(args) == 2:
        report = json.loads(Path(args[0]).read_text())
        python = report.get("environment", {}).get("python_full_version", "3")
        Path(args[1]).write_text(render(pins(report, skip={"loopwright"}), python=python))
    elif command == "requirements" and len(args) == 1:
        project = tomllib.loads(PYPROJECT.read_text())
        print("\n".join(requirements(project, args[0].split(","))))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
