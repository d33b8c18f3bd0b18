"""A compiled model evaluated with numpy alone: no scikit-learn, SciPy or pandas.

The header of a compiled model (container content ``"loopwright-compiled-model"``, format 1)::

    task        "classification" | "regression"
    estimator   the scikit-learn class it was compiled from (informational)
    classes     {"kind": "str"|"int"|"float"|"bool", "values": [...]}  (classification)
    inputs      {"numeric": [names] | null, "categorical": [names]}; null: the caller's numeric
                columns by position
    preprocess  null, or {"sparse": bool, "blocks": [...]} replaying the trainer's ColumnTransformer:
                {"type": "numeric", "columns", "fill", "mean", "scale"} (array names; mean and
                scale may be null) or {"type": "categorical", "columns", "fill": [str],
                "categories": [[str]]} (one-hot, unseen categories encode as zeros); "sparse"
                says scikit-learn multiplied a CSR matrix, which sums in column order
    model       {"type": "linear", "coef", "intercept", "fortran": bool}
                or {"type": "trees", "combine": "mean"|"sum", "cast": "float32"|"float64",
                    "depth", "root", "left", "right", "feature", "threshold", "missingLeft",
                    "value", "init" (sum only)}; a tree node whose children are itself is a leaf
    decision    "argmax" | "gt0" | "ge0" | "value": how scores become a label (or a value)
    link        "identity" | "expit" | "expit2" | "exp" | "softmax": scores to probabilities
                (or, for regression, to the predicted value)
    missing     "reject" | "route": NaN reaching the model is refused, or routed by the trees

Scores replay scikit-learn's arithmetic in its order: sums over trees run sequentially (numpy's
accumulate, never its pairwise reduction), dense linear models use the same matrix product on
the same memory layout, CSR products add column by column. Labels are therefore identical and
probabilities agree to rounding (the tests hold them to 1e-12 on every allow-listed estimator).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.compiled import container
from loopwright.compiled.checks import (
    FloatArray,
    InputError,
    MissingValueError,
    ProgramError,
    names,
    require,
    vector,
)
from loopwright.compiled.scorers import Linear, Trees

__all__ = ["CONTENT", "FORMAT", "InputError", "MissingValueError", "Program", "ProgramError"]

CONTENT = "loopwright-compiled-model"
FORMAT = 1
_LINKS = frozenset({"identity", "expit", "expit2", "exp", "softmax"})
_DECISIONS = frozenset({"argmax", "gt0", "ge0", "value"})
_CLASS_KINDS = {"str": object, "int": np.int64, "float": np.float64, "bool": np.bool_}


class Program:
    """One compiled model, validated on construction so that evaluation cannot index out of range."""

    def __init__(self, header: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        try:
            self._init(header, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProgramError):
                raise
            raise ProgramError(f"malformed compiled model: {type(exc).__name__}: {exc}") from None

    @classmethod
    def loads(cls, data: bytes, *, sha256: str) -> Program:
        """Verify the sha256, then parse (:class:`container.ContainerError` or :class:`ProgramError`)."""
        header, arrays = container.loads(data, sha256=sha256)
        return cls(header, arrays)

    def _init(self, header: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        require(header.get("content") == CONTENT, "not a compiled model")
        require(header.get("format") == FORMAT, f"compiled model format {header.get('format')!r} "
                 f"is not supported (this build reads {FORMAT})")
        self.header = dict(header)
        self.task = str(header["task"])
        require(self.task in ("classification", "regression"), f"unknown task {self.task!r}")
        self.classification = self.task == "classification"
        self.estimator = str(header.get("estimator", ""))
        self.decision = str(header["decision"])
        self.link = str(header["link"])
        require(self.decision in _DECISIONS and self.link in _LINKS, "unknown decision or link")
        self.missing = str(header["missing"])
        require(self.missing in ("reject", "route"), f"unknown missing policy {self.missing!r}")
        inputs = header["inputs"]
        numeric = inputs["numeric"]
        self.numeric_inputs: tuple[str, ...] | None = None if numeric is None else names(numeric)
        self.categorical_inputs = names(inputs["categorical"])
        self._preprocess = _Preprocess(header["preprocess"], arrays) if header["preprocess"] else None
        if self._preprocess is not None:
            require(self.numeric_inputs is not None, "a preprocessed model names its inputs")
            assert self.numeric_inputs is not None
            self._preprocess.check_inputs(self.numeric_inputs, self.categorical_inputs)
        else:
            require(not self.categorical_inputs, "categorical inputs need a preprocessing block")
        model = header["model"]
        if model["type"] == "linear":
            self._model: Linear | Trees = Linear(model, arrays)
        elif model["type"] == "trees":
            self._model = Trees(model, arrays)
        else:
            raise ProgramError(f"unknown model type {model['type']!r}")
        width = self._preprocess.width if self._preprocess is not None else self._model.width
        if self.numeric_inputs is not None and self._preprocess is None:
            require(len(self.numeric_inputs) == width, "inputs do not match the model's width")
        require(self._model.width == width, f"the model takes {self._model.width} features, "
                 f"the preprocessing gives {width}")
        self.width = width
        outputs = self._model.outputs
        if self.classification:
            raw = header["classes"]
            kind = _CLASS_KINDS.get(raw["kind"])
            require(kind is not None, f"unknown class kind {raw['kind']!r}")
            self.classes: npt.NDArray[Any] = np.array(raw["values"], dtype=kind)
            n = len(self.classes)
            require(self.classes.ndim == 1 and n >= 2, "a classifier needs at least two classes")
            require(outputs == (1 if n == 2 and self.decision != "argmax" else n),
                     f"{outputs} scores per row for {n} classes")
            require(self.decision != "value", "a classifier needs a class decision")
        else:
            self.classes = np.zeros(0)
            require(outputs == 1 and self.decision == "value" and self.link in ("identity", "exp"),
                     "a regressor has one score, the value decision and an identity or exp link")
        self.has_proba = self.classification
        self._bound = False
        self._columns: npt.NDArray[np.intp] | None = None

    @property
    def accepts_missing(self) -> bool:
        """Whether NaN in a numeric input is answered (imputed, or routed by the trees)."""
        return self.missing == "route" or self._preprocess is not None

    def bind(self, numeric_names: Sequence[str], categorical_names: Sequence[str] = ()) -> None:
        """Read numeric inputs from a matrix whose columns are ``numeric_names`` (the schema's),
        categorical ones from columns of these names."""
        lacking = [n for n in self.categorical_inputs if n not in categorical_names]
        if lacking:
            raise ProgramError(f"the model reads categorical column(s) {lacking} that the schema lacks")
        position = {n: j for j, n in enumerate(numeric_names)}
        if self.numeric_inputs is None:
            if len(numeric_names) != self.width:
                raise ProgramError(f"the model takes {self.width} features by position; the schema "
                                   f"has {len(numeric_names)} numeric columns")
            self._columns = None
        else:
            absent = [n for n in self.numeric_inputs if n not in position]
            if absent:
                raise ProgramError(f"the model reads numeric column(s) {absent} that the schema lacks")
            columns = [position[n] for n in self.numeric_inputs]
            # The schema's own order (the usual case) needs no per-request column gather.
            in_order = columns == list(range(len(numeric_names)))
            self._columns = None if in_order else np.array(columns, dtype=np.intp)
        self._bound = True

    def evaluate(
        self,
        numeric: FloatArray,
        categorical: Mapping[str, Sequence[str | None]],
        *,
        proba: bool,
        missing: bool = True,
    ) -> tuple[npt.NDArray[Any], FloatArray | None]:
        """Class indices (or regression values) and, with ``proba``, class probabilities.
        ``missing=False`` promises that ``numeric`` holds no NaN (the caller checked): no scans."""
        if not self._bound:
            raise ProgramError("bind() the program to the schema's numeric columns first")
        x = numeric if self._columns is None else numeric[:, self._columns]
        if self._preprocess is not None:
            x = self._preprocess.transform(x, categorical, missing=missing)
            sparse, missing = self._preprocess.sparse, False
        else:
            sparse = False
            if missing and self.missing == "reject" and np.isnan(x).any():
                raise MissingValueError(
                    f"Input X contains NaN; {self.estimator} does not accept missing values")
        scores = self._model.scores(x, sparse=sparse, missing=missing)
        labels = self._decide(scores)
        return labels, (self._probabilities(scores) if proba else None)

    def _decide(self, scores: FloatArray) -> npt.NDArray[Any]:
        if self.decision == "argmax":
            index: npt.NDArray[np.intp] = np.argmax(scores, axis=1)
            return index
        if self.decision == "gt0":
            return (scores[:, 0] > 0).astype(np.intp)
        if self.decision == "ge0":
            return (scores[:, 0] >= 0).astype(np.intp)
        values: FloatArray = np.exp(scores[:, 0]) if self.link == "exp" else scores[:, 0].copy()
        return values

    def _probabilities(self, scores: FloatArray) -> FloatArray:
        if self.link == "softmax":
            out: FloatArray = scores - scores.max(axis=1).reshape(-1, 1)
            np.exp(out, out=out)
            out /= out.sum(axis=1).reshape(-1, 1)
            return out
        if self.link == "identity":
            same: FloatArray = scores.copy()
            return same
        raw = scores[:, 0] * 2 if self.link == "expit2" else scores[:, 0]
        positive = 1.0 / (1.0 + np.exp(-raw))
        pair: FloatArray = np.stack([1 - positive, positive], axis=1)
        return pair


class _Preprocess:
    """The trainer's ColumnTransformer: imputed and scaled numeric blocks, imputed one-hot blocks."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.sparse = bool(spec["sparse"])
        self._blocks: list[tuple[str, Any]] = []
        self.width = 0
        for block in spec["blocks"]:
            columns = names(block["columns"])
            if block["type"] == "numeric":
                n = len(columns)
                fill = vector(arrays, block["fill"], n)
                require(not np.isnan(fill).any(), "an imputer fill value is NaN")
                mean = None if block["mean"] is None else vector(arrays, block["mean"], n)
                scale = None if block["scale"] is None else vector(arrays, block["scale"], n)
                self._blocks.append(("numeric", (columns, fill, mean, scale)))
                self.width += n
            elif block["type"] == "categorical":
                fills = [str(v) for v in block["fill"]]
                categories = [names(c) for c in block["categories"]]
                require(len(fills) == len(columns) == len(categories), "categorical block sizes differ")
                offset, lookups = 0, []
                for cats in categories:
                    lookups.append({v: offset + k for k, v in enumerate(cats)})
                    offset += len(cats)
                self._blocks.append(("categorical", (columns, fills, lookups, offset)))
                self.width += offset
            else:
                raise ProgramError(f"unknown preprocessing block {block['type']!r}")

    def check_inputs(self, numeric: tuple[str, ...], categorical: tuple[str, ...]) -> None:
        numeric_used = [c for kind, b in self._blocks if kind == "numeric" for c in b[0]]
        categorical_used = [c for kind, b in self._blocks if kind == "categorical" for c in b[0]]
        require(tuple(numeric_used) == numeric and tuple(categorical_used) == categorical,
                 "the preprocessing blocks must read exactly the declared inputs, in order")

    def transform(
        self, x: FloatArray, categorical: Mapping[str, Sequence[str | None]], *, missing: bool
    ) -> FloatArray:
        rows = x.shape[0]
        parts: list[FloatArray] = []
        start = 0
        for kind, block in self._blocks:
            if kind == "numeric":
                columns, fill, mean, scale = block
                part = x[:, start : start + len(columns)]
                start += len(columns)
                if missing and np.isnan(part).any():
                    part = np.where(np.isnan(part), fill, part)
                # StandardScaler.transform: X -= mean_; X /= scale_ (the same IEEE operations).
                if mean is not None:
                    part = part - mean
                if scale is not None:
                    part = part / scale
                parts.append(part)
            else:
                columns, fills, lookups, width = block
                out = np.zeros((rows, width), dtype=np.float64)
                for name, fill, lookup in zip(columns, fills, lookups, strict=True):
                    for r, value in enumerate(categorical[name]):
                        k = lookup.get(fill if value is None else value)
                        if k is not None:  # an unseen category encodes as all zeros
                            out[r, k] = 1.0
                parts.append(out)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
