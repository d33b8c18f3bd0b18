"""The scorers of a compiled model: a linear model's matrix product and tree ensembles' walks.

Both replay scikit-learn's arithmetic in its order (see :mod:`loopwright.compiled.program`), on
arrays :mod:`loopwright.compiled.checks` has validated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.compiled.checks import FloatArray, InputError, float_array, index_array, require

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_LEAF_CHECK_EVERY = 4  # levels between two checks that every tree walk is on a leaf (~1 level's cost)


class Linear:
    """``X @ coef.T + intercept`` as scikit-learn's linear models compute it."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        coef = float_array(arrays, spec["coef"])
        require(coef.ndim in (1, 2), "coef must be 1-D or 2-D")
        self._coef = np.asfortranarray(coef) if spec["fortran"] else coef
        self.width = int(coef.shape[-1])
        self.outputs = 1 if coef.ndim == 1 else int(coef.shape[0])
        self._intercept = float_array(arrays, spec["intercept"])
        require(self._intercept.shape in ((), (self.outputs,)), "intercept does not match coef")
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
        if total.ndim == 2:  # a 2-D coef: already [rows, outputs]
            return total
        out: FloatArray = total.reshape(x.shape[0], self.outputs)
        return out


class Trees:
    """Every tree walked at once: one gather per depth level over a [trees, rows] node matrix."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self._combine = spec["combine"]
        require(self._combine in ("mean", "sum"), f"unknown combination {self._combine!r}")
        self._cast = spec["cast"]
        require(self._cast in ("float32", "float64"), f"unknown cast {self._cast!r}")
        self._depth = int(spec["depth"])
        self.width = int(spec["width"])
        self._root = index_array(arrays, spec["root"])
        self._left = index_array(arrays, spec["left"])
        self._right = index_array(arrays, spec["right"])
        self._feature = index_array(arrays, spec["feature"])
        self._threshold = float_array(arrays, spec["threshold"])
        self._missing_left = arrays[spec["missingLeft"]] != 0
        ids = np.arange(len(self._left), dtype=np.intp)
        self._leaf = (self._left == ids) & (self._right == ids)
        value = float_array(arrays, spec["value"])
        nodes, trees = len(self._left), len(self._root)
        require(trees > 0 and 0 <= self._depth <= 10_000 and self.width > 0, "bad tree ensemble sizes")
        for name, a in (("right", self._right), ("feature", self._feature),
                        ("threshold", self._threshold), ("missingLeft", self._missing_left)):
            require(a.shape == (nodes,), f"tree array {name} has shape {a.shape}, expected ({nodes},)")
        for name, a, bound in (("root", self._root, nodes), ("left", self._left, nodes),
                               ("right", self._right, nodes), ("feature", self._feature, self.width)):
            require(bool(a.size == 0 or (a.min() >= 0 and a.max() < bound)), f"tree {name} out of range")
        if self._combine == "mean":
            require(value.ndim == 2 and value.shape[0] == nodes, "forest values must be [nodes, outputs]")
            self.outputs = int(value.shape[1])
            self._value = value
        else:
            self._init = float_array(arrays, spec["init"])
            self.outputs = int(self._init.shape[0]) if self._init.ndim == 1 else 0
            require(self.outputs > 0 and trees % self.outputs == 0, "boosting init does not match trees")
            require(value.shape == (nodes,), "boosting values must be one per node")
            self._value = value

    def scores(self, x: FloatArray, *, sparse: bool, missing: bool) -> FloatArray:
        rows = x.shape[0]
        # scikit-learn's trees compare float32 inputs (histogram boosting: float64) with
        # float64 thresholds; NaN goes where the node's missing branch does. A value beyond
        # float32's range is refused, as scikit-learn's input validation refuses it (fmax skips NaN).
        if self._cast == "float32":
            if x.size and float(np.fmax.reduce(np.abs(x), axis=None, initial=0.0)) > _FLOAT32_MAX:
                raise InputError("Input X contains a value too large for dtype('float32')")
            xc = x.astype(np.float32).astype(np.float64)
        else:
            xc = x
        flat = xc.ravel()
        # Locals: a level is a few numpy calls on ~100 nodes, attribute lookups would show.
        feature, threshold, leaf = self._feature, self._threshold, self._leaf
        left, right = self._left, self._right
        base = np.arange(rows, dtype=np.intp) * self.width if rows > 1 else None
        node = np.repeat(self._root[:, None], rows, axis=1)
        missing = missing and bool(np.isnan(flat).any())
        for level in range(self._depth):
            # Leaves point to themselves: stop once every walk is on one (the deepest branches are rare).
            if level % _LEAF_CHECK_EVERY == _LEAF_CHECK_EVERY - 1 and leaf[node].all():
                break
            at = feature[node]
            v = flat[at if base is None else base + at]
            go_left = v <= threshold[node]
            if missing:
                go_left |= np.isnan(v) & self._missing_left[node]
            node = np.where(go_left, left[node], right[node])
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
