"""Build hook: the v2 gRPC messages are generated from their .proto whenever the package is built.

`pip install` (wheel or editable, so `make install`, CI and the images) runs ``build_py``, which
first runs protoc (grpcio-tools, a build requirement) on every ``*.proto`` under
operator/loopwright, writing ``<name>_pb2.py`` and its type stub next to it. The generated files
are build products, ignored by git; `make proto` regenerates them after an edit of the .proto.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent / "operator"


def generate() -> None:
    from grpc_tools import protoc  # build requirement (pyproject.toml)

    for proto in sorted(ROOT.glob("loopwright/**/*.proto")):
        relative = str(proto.relative_to(ROOT))
        args = ["protoc", f"-I{ROOT}", f"--python_out={ROOT}", f"--pyi_out={ROOT}", relative]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {relative}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
