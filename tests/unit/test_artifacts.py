import importlib
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from loopwright import artifacts, storage
from loopwright.core import estimators


def _pipeline(estimator):
    pre = ColumnTransformer(
        [
            ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["a"]),
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                ["c"],
            ),
        ]
    )
    return Pipeline([("pre", pre), ("model", estimator)])


def _data():
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=120), "c": rng.choice(["x", "y", "z"], size=120).astype(object)})
    return x, rng.integers(0, 3, size=120), rng.normal(size=120)


# Small sizes keep the test fast; the types in the file do not depend on them.
_SMALL = {"n_estimators": 3, "max_iter": 3}


@pytest.mark.parametrize("name", sorted(estimators.ESTIMATORS))
def test_allow_list_covers_every_allowed_estimator(name):
    spec = estimators.ESTIMATORS[name]
    cls = _estimator_class(name)
    params = {k: v for k, v in _SMALL.items() if k in spec.params}
    x, y_cls, y_reg = _data()
    model = _pipeline(cls(**params)).fit(x, y_cls if spec.task == "classification" else y_reg)
    data = artifacts.dumps(model)
    # The file's own view is only compared with our fixed list, never used as the list.
    assert set(sio.get_untrusted_types(data=data)) <= set(artifacts.TRUSTED_TYPES)
    loaded = artifacts.loads(data, sha256=storage.sha256_hex(data))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_save_and_load_verify_sha(tmp_path):
    x, y, _ = _data()
    model = _pipeline(_estimator_class("LogisticRegression")()).fit(x, y)
    uri = str(tmp_path / "model.skops")
    digest = artifacts.save(model, uri)
    assert artifacts.load(uri, sha256=digest).predict(x).tolist() == model.predict(x).tolist()
    with pytest.raises(storage.IntegrityError):
        artifacts.load(uri, sha256="f" * 64)


def test_pickle_is_never_loaded():
    data = pickle.dumps({"x": 1})
    with pytest.raises(artifacts.ArtifactError, match="pickle"):
        artifacts.loads(data, sha256=storage.sha256_hex(data))


def test_untrusted_type_is_refused():
    model = FunctionTransformer(os.getcwd)
    data = sio.dumps(model)
    with pytest.raises(artifacts.UntrustedTypesError) as err:
        artifacts.loads(data, sha256=storage.sha256_hex(data))
    assert err.value.types == ["posix.getcwd"]


def _estimator_class(name):
    module_name, _, cls_name = estimators.ESTIMATORS[name].import_path.rpartition(".")
    return getattr(importlib.import_module(module_name), cls_name)
