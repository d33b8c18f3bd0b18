"""Build the krew archive of the kubectl plugin and write its sha256 into loopwright.yaml.

    python manifests/krew/build.py [--out dist]

The archive holds one file, ``kubectl-loopwright``: a Python zip application (PEP 441) with the
plugin (loopwright.cli), the few pure-Python modules it imports and PyYAML's pure-Python code, so
it runs on any Python 3.11+ without installing anything. Reports are read from S3 with boto3
when it is importable (``pip install boto3``), as the installed package does. Release: upload the
archive as the GitHub release asset the manifest's ``uri`` names, then submit loopwright.yaml to
the krew index. Files are added in a fixed order with fixed times, so the same sources give the
same bytes and the same sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import tarfile
import zipfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parents[1] / "operator" / "loopwright"
MODULES = ["__init__.py", "api/__init__.py", "api/names.py", "reports/__init__.py", "reports/html.py",
           "storage.py", "cli/*.py"]
STAMP = (2020, 1, 1, 0, 0, 0)
MAIN = "from loopwright.cli.__main__ import main\nimport sys\nsys.exit(main())\n"


def _files() -> list[tuple[str, bytes]]:
    out = [(f"loopwright/{p.relative_to(PACKAGE).as_posix()}", p.read_bytes())
           for pattern in MODULES for p in sorted(PACKAGE.glob(pattern))]
    yaml_dir = Path(yaml.__file__).parent
    out += [(f"yaml/{p.name}", p.read_bytes()) for p in sorted(yaml_dir.glob("*.py"))]
    out.append(("__main__.py", MAIN.encode()))
    return out


def zipapp() -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in _files():
            info = zipfile.ZipInfo(name, date_time=STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def archive(app: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("kubectl-loopwright")
        info.size, info.mode, info.mtime = len(app), 0o755, 0
        tar.addfile(info, io.BytesIO(app))
    # gzip stores a time too: zero it so the bytes depend on the sources only.
    data = bytearray(buffer.getvalue())
    data[4:8] = b"\0\0\0\0"
    return bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "dist")
    args = parser.parse_args()
    data = archive(zipapp())
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = HERE / "loopwright.yaml"
    version = yaml.safe_load(manifest.read_text())["spec"]["version"]
    target = args.out / f"kubectl-loopwright-{version}.tar.gz"
    target.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    manifest.write_text(re.sub(r"sha256: [0-9a-f]{64}", f"sha256: {digest}", manifest.read_text()))
    print(f"{target} sha256 {digest}")


if __name__ == "__main__":
    main()
