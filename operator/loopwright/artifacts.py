"""Model artifacts: skops files loaded only with a fixed allow-list of types.

Pickle (and joblib) run arbitrary code on load, so a model is stored with skops
and loaded with ``trusted=TRUSTED_TYPES``. The list is fixed here, in code, on
purpose: deriving it from the file (``skops.io.get_untrusted_types``) would
trust whatever the file asks for. It holds exactly the types the allow-listed
estimators (see :mod:`loopwright.core.estimators`) need beyond skops' defaults; the
unit tests check that against every estimator. A pipeline that brings its own
factory declares the extra types its model needs (``spec.model.trustedTypes``); they
are added to the list for that model only, and types from modules that run code or
touch the system are never accepted (:data:`FORBIDDEN_MODULES`). The sha256 is
verified before every load so that a swapped or corrupted object never reaches the
parser.

skops and scikit-learn are imported lazily: the operator imports this module
for the names and errors without needing the ML stack.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

from loopwright import storage

TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)

FORMAT = "skops"



class ArtifactError(Exception):
    """The artifact is not a loadable, trusted skops file."""


class UntrustedTypesError(ArtifactError):
    """The file asks for types outside the allow-list."""

    def __init__(self, types: list[str]) -> None:
        super().__init__(f"untrusted types in the artifact: {', '.join(sorted(types))}")
        self.types = sorted(types)



FORBIDDEN_MODULES = frozenset({
    "builtins", "__builtin__", "os", "posix", "nt", "sys", "subprocess", "shutil", "importlib", "runpy",
    "pickle", "_pickle", "copyreg", "marshal", "shelve", "dill", "cloudpickle", "joblib", "ctypes", "code",
    "codeop", "pty", "socket", "signal", "webbrowser", "pdb", "operator", "functools", "types", "io",
    "tempfile", "pathlib", "multiprocessing", "threading", "asyncio", "urllib", "http", "requests",
    "skops", "loopwright",
})
"""Top-level modules whose types a spec may never declare trusted (code execution, the system)."""


def forbidden_types(types: Sequence[str]) -> list[str]:
    """Declared types that are never trusted, whatever a spec says: anything from a module that
    runs code, touches the system or deserialises (``builtins``, ``os``, ``subprocess``, ``pickle``...)."""
    return [t for t in types if t.split(".", 1)[0] in FORBIDDEN_MODULES]

def dumps(model: Any) -> bytes:
    """Serialise a fitted model to skops bytes."""
    import skops.io as sio  # noqa: PLC0415 - lazy, see the module docstring

    data: bytes = sio.dumps(model)
    return data


def check_types(data: bytes, *, extra: Sequence[str] = ()) -> None:
    """Refuse a skops file that asks for a type outside the built-in list and ``extra``.

    ``extra`` is the list a pipeline declares for its factory's own types (``spec.model.trustedTypes``,
    recorded on the ModelVersion): fixed by the spec, never read from the file.
    """
    import skops.io as sio  # noqa: PLC0415 - lazy, see the module docstring

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ArtifactError("not a skops file (pickle and other formats are never loaded)")
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:
        raise ArtifactError(f"unreadable skops file: {exc}") from exc
    allowed = {*TRUSTED_TYPES, *extra}
    refused = [t for t in untrusted if t not in allowed]
    if refused:
        raise UntrustedTypesError(refused)


def loads(data: bytes, *, sha256: str, extra: Sequence[str] = ()) -> Any:
    """Verify the sha256, then load with the fixed trusted-type list plus ``extra`` (see check_types)."""
    actual = storage.sha256_hex(data)
    if actual != sha256.lower():
        raise storage.IntegrityError(f"artifact sha256 is {actual}, expected {sha256}")
    refused = forbidden_types(extra)
    if refused:
        raise UntrustedTypesError(refused)
    check_types(data, extra=extra)
    import skops.io as sio  # noqa: PLC0415 - lazy, see the module docstring

    try:
        return sio.loads(data, trusted=[*TRUSTED_TYPES, *extra])
    except Exception as exc:
        raise ArtifactError(f"cannot load the skops file: {exc}") from exc


def save(model: Any, uri: str) -> str:
    """Write the model to ``uri``; returns the sha256 to record next to the URI."""
    return storage.put_bytes(uri, dumps(model))


def load(uri: str, *, sha256: str, extra: Sequence[str] = ()) -> Any:
    """Read, verify and load the model at ``uri`` (``extra``: its declared trusted types)."""
    return loads(storage.get_bytes(uri), sha256=sha256, extra=extra)
