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

CONTENT = "loopwright-compiled-model"
FORMAT = 1
FloatArray = npt.NDArray[np.float64]
_LINKS = frozenset({"identity", "expit", "expit2", "exp", "softmax"})
_DECISIONS = frozenset({"argmax", "gt0", "ge0", "value"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CLASS_KINDS = {"str": object, "int": np.int64, "float": np.float64, "bool": np.bool_}


class ProgramError(Exception):
    """The compiled model is malformed or does not fit the schema it is served with."""


class InputError(ValueError):
    """Input the model cannot take, which scikit-learn refuses too (a 422 when serving)."""


class MissingValueError(InputError):
    """A missing value reached a model that does not accept them."""


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
        _require(header.get("content") == CONTENT, "not a compiled model")
        _require(header.get("format") == FORMAT, f"compiled model format {header.get('format')!r} "
                 f"is not supported (this build reads {FORMAT})")
        self.header = dict(header)
        self.task = str(header["task"])
        _require(self.task in ("classification", "regression"), f"unknown task {self.task!r}")
        self.classification = self.task == "classification"
        self.estimator = str(header.get("estimator", ""))
        self.decision = str(header["decision"])
        self.link = str(header["link"])
        _require(self.decision in _DECISIONS and self.link in _LINKS, "unknown decision or link")
        self.missing = str(header["missing"])
        _require(self.missing in ("reject", "route"), f"unknown missing policy {self.missing!r}")
        inputs = header["inputs"]
        numeric = inputs["numeric"]
        self.numeric_inputs: tuple[str, ...] | None = None if numeric is None else _names(numeric)
        self.categorical_inputs = _names(inputs["categorical"])
        self._preprocess = _Preprocess(header["preprocess"], arrays) if header["preprocess"] else None
        if self._preprocess is not None:
            _require(self.numeric_inputs is not None, "a preprocessed model names its inputs")
            assert self.numeric_inputs is not None
            self._preprocess.check_inputs(self.numeric_inputs, self.categorical_inputs)
        else:
            _require(not self.categorical_inputs, "categorical inputs need a preprocessing block")
        model = header["model"]
        if model["type"] == "linear":
            self._model: _Linear | _Trees = _Linear(model, arrays)
        elif model["type"] == "trees":
            self._model = _Trees(model, arrays)
        else:
            raise ProgramError(f"unknown model type {model['type']!r}")
        width = self._preprocess.width if self._preprocess is not None else self._model.width
        if self.numeric_inputs is not None and self._preprocess is None:
            _require(len(self.numeric_inputs) == width, "inputs do not match the model's width")
        _require(self._model.width == width, f"the model takes {self._model.width} features, "
                 f"the preprocessing gives {width}")
        self.width = width
        outputs = self._model.outputs
        if self.classification:
            raw = header["classes"]
            kind = _CLASS_KINDS.get(raw["kind"])
            _require(kind is not None, f"unknown class kind {raw['kind']!r}")
            self.classes: npt.NDArray[Any] = np.array(raw["values"], dtype=kind)
            n = len(self.classes)
            _require(self.classes.ndim == 1 and n >= 2, "a classifier needs at least two classes")
            _require(outputs == (1 if n == 2 and self.decision != "argmax" else n),
                     f"{outputs} scores per row for {n} classes")
            _require(self.decision != "value", "a classifier needs a class decision")
        else:
            self.classes = np.zeros(0)
            _require(outputs == 1 and self.decision == "value" and self.link in ("identity", "exp"),
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
            self._columns = np.array([position[n] for n in self.numeric_inputs], dtype=np.intp)
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
            columns = _names(block["columns"])
            if block["type"] == "numeric":
                n = len(columns)
                fill = _vector(arrays, block["fill"], n)
                _require(not np.isnan(fill).any(), "an imputer fill value is NaN")
                mean = None if block["mean"] is None else _vector(arrays, block["mean"], n)
                scale = None if block["scale"] is None else _vector(arrays, block["scale"], n)
                self._blocks.append(("numeric", (columns, fill, mean, scale)))
                self.width += n
            elif block["type"] == "categorical":
                fills = [str(v) for v in block["fill"]]
                categories = [_names(c) for c in block["categories"]]
                _require(len(fills) == len(columns) == len(categories), "categorical block sizes differ")
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
        _require(tuple(numeric_used) == numeric and tuple(categorical_used) == categorical,
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
        return parts[0] if len(parts) == 1 else np.hstack(parts)


class _Linear:
    """``X @ coef.T + intercept`` as scikit-learn's linear models compute it."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        coef = _float(arrays, spec["coef"])
        _require(coef.ndim in (1, 2), "coef must be 1-D or 2-D")
        self._coef = np.asfortranarray(coef) if spec["fortran"] else coef
        self.width = int(coef.shape[-1])
        self.outputs = 1 if coef.ndim == 1 else int(coef.shape[0])
        self._intercept = _float(arrays, spec["intercept"])
        _require(self._intercept.shape in ((), (self.outputs,)), "intercept does not match coef")
        self._coef_t = self._coef if coef.ndim == 1 else self._coef.T

    def scores(self, x: FloatArray, *, sparse: bool, missing: bool) -> FloatArray:
        if sparse:
            # scipy's CSR product: each output starts at 0 and adds a_ij * w_j in column order
            # (zero entries add nothing but a signed zero, which no label or probability sees).
            coef = self._coef.reshape(self.outputs, self.width)
            products = x[:, None, :] * coef[None, :, :]
            total = np.add.accumulate(products, axis=2)[:, :, -1] + self._intercept
        else:
            total = x @ self._coef_t + self._intercept
        out: FloatArray = total.reshape(x.shape[0], self.outputs)
        return out


class _Trees:
    """Every tree walked at once: one gather per depth level over a [trees, rows] node matrix."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self._combine = spec["combine"]
        _require(self._combine in ("mean", "sum"), f"unknown combination {self._combine!r}")
        self._cast = spec["cast"]
        _require(self._cast in ("float32", "float64"), f"unknown cast {self._cast!r}")
        self._depth = int(spec["depth"])
        self.width = int(spec["width"])
        self._root = _index(arrays, spec["root"])
        self._left = _index(arrays, spec["left"])
        self._right = _index(arrays, spec["right"])
        self._feature = _index(arrays, spec["feature"])
        self._threshold = _float(arrays, spec["threshold"])
        self._missing_left = arrays[spec["missingLeft"]] != 0
        value = _float(arrays, spec["value"])
        nodes, trees = len(self._left), len(self._root)
        _require(trees > 0 and 0 <= self._depth <= 10_000 and self.width > 0, "bad tree ensemble sizes")
        for name, a in (("right", self._right), ("feature", self._feature),
                        ("threshold", self._threshold), ("missingLeft", self._missing_left)):
            _require(a.shape == (nodes,), f"tree array {name} has shape {a.shape}, expected ({nodes},)")
        for name, a, bound in (("root", self._root, nodes), ("left", self._left, nodes),
                               ("right", self._right, nodes), ("feature", self._feature, self.width)):
            _require(bool(a.size == 0 or (a.min() >= 0 and a.max() < bound)), f"tree {name} out of range")
        if self._combine == "mean":
            _require(value.ndim == 2 and value.shape[0] == nodes, "forest values must be [nodes, outputs]")
            self.outputs = int(value.shape[1])
            self._value = value
        else:
            self._init = _float(arrays, spec["init"])
            self.outputs = int(self._init.shape[0]) if self._init.ndim == 1 else 0
            _require(self.outputs > 0 and trees % self.outputs == 0, "boosting init does not match trees")
            _require(value.shape == (nodes,), "boosting values must be one per node")
            self._value = value

    def scores(self, x: FloatArray, *, sparse: bool, missing: bool) -> FloatArray:
        rows = x.shape[0]
        # scikit-learn's trees compare float32 inputs (histogram boosting: float64) with
        # float64 thresholds; NaN goes where the node's missing branch does. A value beyond
        # float32's range is refused, as scikit-learn's input validation refuses it.
        if self._cast == "float32":
            if x.size and float(np.nanmax(np.abs(x), initial=0.0)) > _FLOAT32_MAX:
                raise InputError("Input X contains a value too large for dtype('float32')")
            xc = x.astype(np.float32).astype(np.float64)
        else:
            xc = x
        flat = xc.ravel()
        base = np.arange(rows, dtype=np.intp) * self.width
        node = np.repeat(self._root[:, None], rows, axis=1)
        missing = missing and bool(np.isnan(flat).any())
        for _ in range(self._depth):
            v = flat[base + self._feature[node]]
            go_left = v <= self._threshold[node]
            if missing:
                go_left |= np.isnan(v) & self._missing_left[node]
            node = np.where(go_left, self._left[node], self._right[node])
        leaves = self._value[node]
        if self._combine == "mean":  # forests: out = 0; out += tree_t; then out /= trees
            total: FloatArray = np.add.accumulate(leaves, axis=0)[-1] / len(self._root)
            return total
        # boosting: raw = init; raw[:, k] += the k-th tree of each iteration, in order
        per_output = leaves.reshape(-1, self.outputs, rows)
        start = np.broadcast_to(self._init[None, :, None], (1, self.outputs, rows))
        raw = np.add.accumulate(np.concatenate([start, per_output]), axis=0)[-1]
        out: FloatArray = raw.T
        return out


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProgramError(message)


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProgramError("expected a list of strings")
    return tuple(value)


def _float(arrays: Mapping[str, npt.NDArray[Any]], name: str) -> FloatArray:
    a = arrays[name]
    _require(a.dtype == np.float64, f"array {name!r} must be float64")
    return a


def _index(arrays: Mapping[str, npt.NDArray[Any]], name: str) -> npt.NDArray[np.intp]:
    a = arrays[name]
    _require(a.dtype.kind == "i" and a.ndim == 1, f"array {name!r} must be a 1-D integer array")
    return a.astype(np.intp, copy=False)


def _vector(arrays: Mapping[str, npt.NDArray[Any]], name: str, size: int) -> FloatArray:
    a = _float(arrays, name)
    _require(a.shape == (size,), f"array {name!r} must have {size} values")
    return a
