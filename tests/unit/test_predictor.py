"""The predictor's ASGI app against small models trained here (no network, no cluster)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopwright.api.schema import ColumnSpec, ColumnType, DatasetSchema, LabelSpec, TaskType
from loopwright.core.profile import Profile, bin_numeric, profile_categorical, profile_numeric
from loopwright.serving.app import PredictorApp
from loopwright.serving.decode import Batch, Decoder, RequestError
from loopwright.serving.model import ServedModel
from loopwright.serving.settings import Settings

pytestmark = pytest.mark.anyio

NAMES = ("age", "income", "score")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(18, 90, n), rng.normal(50_000, 15_000, n), rng.normal(0, 1, n)])
    y = (x[:, 2] + (x[:, 0] - 50) / 30 > 0).astype(np.int64)
    return x, y


def _schema(task: TaskType = TaskType.CLASSIFICATION, *, nullable_score: bool = False) -> DatasetSchema:
    return DatasetSchema(
        label=LabelSpec(name="y", task=task),
        columns=[
            ColumnSpec(name="age", type=ColumnType.NUMERIC, min=0, max=130),
            ColumnSpec(name="income", type=ColumnType.NUMERIC),
            ColumnSpec(name="score", type=ColumnType.NUMERIC, nullable=nullable_score),
        ],
    )


def _profile(
    schema: DatasetSchema, x: np.ndarray, predictions: np.ndarray, *, classes: list[str] | None
) -> Profile:
    task = schema.label.task
    prediction = (
        profile_categorical([str(p) for p in predictions], categories=classes)
        if task == TaskType.CLASSIFICATION
        else profile_numeric(predictions)
    )
    return Profile(
        rows=len(x),
        features={name: profile_numeric(x[:, j]) for j, name in enumerate(NAMES)},
        prediction=prediction,
        schema=schema,
        task=task,
        classes=classes,
    )


def _served(
    estimator: Any, *, task: TaskType = TaskType.CLASSIFICATION, nullable_score: bool = False
) -> ServedModel:
    x, y = _data()
    target = y if task == TaskType.CLASSIFICATION else x[:, 2] * 3 + 1
    estimator.fit(x, target)
    classes = [str(c) for c in estimator.classes_] if task == TaskType.CLASSIFICATION else None
    profile = _profile(_schema(task, nullable_score=nullable_score), x, estimator.predict(x), classes=classes)
    return ServedModel(estimator=estimator, profile=profile)


TOKEN = "feedback-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}


def _app(served: ServedModel | None, **overrides: Any) -> PredictorApp:
    settings = Settings(
        model_name="credit",
        model_version="3",
        model_uri="unused",
        model_sha256="unused",
        profile_uri="unused",
        **{"feedback_token": TOKEN, **overrides},
    )
    app = PredictorApp(settings=settings)
    if served is not None:
        app.plane.install(served)
    return app


async def _client(app: PredictorApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://predictor",
                                 headers=BEARER) as c:
        yield c


@pytest.fixture
async def lr() -> AsyncIterator[tuple[httpx.AsyncClient, PredictorApp, ServedModel]]:
    served = _served(LogisticRegression())
    app = _app(served, max_body_bytes=4096)
    async for c in _client(app):
        yield c, app, served


def _v2_named(rows: list[list[float]], datatype: str = "FP64") -> dict[str, Any]:
    return {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": datatype, "data": [r[j] for r in rows]}
            for j, name in enumerate(NAMES)
        ]
    }


ROWS = [[30.0, 40_000.0, 0.5], [80.0, 20_000.0, -2.0], [45.5, 61_000.0, 1.25]]


def _metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line starts with {line_prefix!r}")


# -- health and metadata ----------------------------------------------------------------------------


async def test_ready_once_loaded_and_during_the_drain() -> None:
    app = _app(None)
    async for c in _client(app):
        assert (await c.get("/v2/health/live")).status_code == 200
        assert (await c.get("/v2/health/ready")).status_code == 503
        r = await c.post("/v2/models/credit/infer", json=_v2_named(ROWS))
        assert r.status_code == 503
        app.plane.install(_served(LogisticRegression()))
        assert (await c.get("/v2/health/ready")).status_code == 200
        assert (await c.get("/v2/models/credit/ready")).status_code == 200
        app.plane.begin_drain()
        # kube-proxy falls back to a terminating pod that is still ready while no other pod is.
        assert (await c.get("/v2/health/ready")).status_code == 200
        assert (await c.post("/v2/models/credit/infer", json=_v2_named(ROWS))).status_code == 200


async def test_metadata_lists_schema_inputs_and_outputs(lr: Any) -> None:
    c, _, _ = lr
    meta = (await c.get("/v2/models/credit")).json()
    assert meta["name"] == "credit"
    assert meta["versions"] == ["3"]
    assert [i["name"] for i in meta["inputs"]] == list(NAMES)
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert [o["name"] for o in meta["outputs"]] == ["predict", "prediction_id", "predict_proba"]
    assert (await c.get("/v2/models/credit/versions/3")).status_code == 200
    assert (await c.get("/v2/models/other")).status_code == 404


# -- prediction ---------------------------------------------------------------------------------------


async def test_v2_named_inputs_predict_like_sklearn(lr: Any) -> None:
    c, _, served = lr
    r = await c.post("/v2/models/credit/infer", json={"id": "req-1", **_v2_named(ROWS)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "credit"
    assert body["model_version"] == "3"
    assert body["id"] == "req-1"
    predict = body["outputs"][0]
    assert predict["name"] == "predict"
    assert predict["datatype"] == "INT64"
    assert predict["shape"] == [3]
    assert predict["data"] == served.estimator.predict(np.array(ROWS)).tolist()
    ids = body["outputs"][1]
    assert ids["name"] == "prediction_id"
    assert len(set(ids["data"])) == 3


async def test_v2_shapes_and_datatypes_all_accepted(lr: Any) -> None:
    c, _, served = lr
    expected = served.estimator.predict(np.array(ROWS)).tolist()
    column_shaped = _v2_named(ROWS)
    for tensor in column_shaped["inputs"]:
        tensor["shape"] = [3, 1]
        tensor["data"] = [[v] for v in tensor["data"]]
    matrix = {"inputs": [{"name": "input-0", "shape": [3, 3], "datatype": "FP32", "data": ROWS}]}
    flat_matrix = {
        "inputs": [{"name": "x", "shape": [3, 3], "datatype": "FP64", "data": [v for r in ROWS for v in r]}]
    }
    integers = [[30, 40_000, 1], [80, 20_000, -2], [45, 61_000, 1]]
    as_int = _v2_named(integers, datatype="INT64")
    for body in (column_shaped, matrix, flat_matrix):
        r = await c.post("/v2/models/credit/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
    r = await c.post("/v2/models/credit/infer", json=as_int)
    assert r.status_code == 200, r.text
    assert (
        r.json()["outputs"][0]["data"] == served.estimator.predict(np.array(integers, dtype=float)).tolist()
    )


async def test_v2_predict_proba_on_request(lr: Any) -> None:
    c, _, served = lr
    body = {**_v2_named(ROWS), "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    out = {o["name"]: o for o in (await c.post("/v2/models/credit/infer", json=body)).json()["outputs"]}
    assert out["predict_proba"]["shape"] == [3, 2]
    np.testing.assert_allclose(out["predict_proba"]["data"], served.estimator.predict_proba(np.array(ROWS)))


async def test_v1_predict_with_named_features(lr: Any) -> None:
    c, _, served = lr
    instances = [dict(zip(NAMES, r, strict=True)) for r in ROWS]
    r = await c.post("/v1/models/credit:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == served.estimator.predict(np.array(ROWS)).tolist()
    assert len(r.json()["ids"]) == 3


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (RandomForestClassifier(n_estimators=15, max_depth=6, random_state=0), TaskType.CLASSIFICATION),
        (RandomForestRegressor(n_estimators=10, random_state=0), TaskType.REGRESSION),
        (LinearRegression(), TaskType.REGRESSION),
        (LogisticRegression(), TaskType.CLASSIFICATION),
    ],
)
def test_fast_path_is_verified_and_identical(estimator: Any, task: TaskType) -> None:
    served = _served(estimator, task=task)
    assert served.form == "skops-compiled"
    x, _ = _data(n=300, seed=7)
    got = served.predict(Batch(rows=len(x), numeric=x, categorical={}))[0].labels
    np.testing.assert_array_equal(got, estimator.predict(x))


def test_fast_path_falls_back_when_the_replay_disagrees() -> None:
    x, y = _data()
    est = LogisticRegression().fit(x, y)
    profile = _profile(_schema(), x, est.predict(x), classes=["0", "1"])
    # An estimator whose predict() is not what its parameters say: the probe check must notice.
    est.predict = lambda rows: np.zeros(len(rows), dtype=np.int64)  # type: ignore[method-assign]
    served = ServedModel(estimator=est, profile=profile)
    assert served.form == "skops"
    got = served.predict(Batch(rows=3, numeric=np.array(ROWS), categorical={}))[0].labels
    assert got.tolist() == [0, 0, 0]


# -- bad input: 4xx with a JSON error, never a 5xx ---------------------------------------------------


def _named_with(**changes: Any) -> dict[str, Any]:
    body = _v2_named(ROWS)
    for i, tensor in enumerate(body["inputs"]):
        if tensor["name"] in changes:
            body["inputs"][i] = {**tensor, **changes[tensor["name"]]}
    return body


BAD_V2 = [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"inputs": []}, 400, "non-empty list"),
    ({"inputs": [{"name": "age"}]}, 400, "shape"),
    (_named_with(age={"datatype": "FP128"}), 400, "unknown datatype"),
    (_named_with(age={"shape": [2], "data": [30, 80]}), 400, "rows"),
    (_named_with(age={"shape": [3, 2]}), 400, "[N] or [N, 1]"),
    (_named_with(age={"shape": [-3]}), 400, "non-negative"),
    ({"inputs": _v2_named(ROWS)["inputs"][:2]}, 422, "missing feature"),
    (
        {
            "inputs": [
                *_v2_named(ROWS)["inputs"],
                {"name": "zip", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]},
            ]
        },
        422,
        "unknown input 'zip'",
    ),
    (_named_with(age={"data": ["thirty", "x", "y"]}), 422, "expected numbers"),
    (_named_with(age={"datatype": "BYTES"}), 422, "numeric"),
    (_named_with(age={"data": [30, None, 40]}), 422, "missing value"),
    (_named_with(age={"data": [30, 200, 40]}), 422, "above max"),
    (_named_with(age={"data": [30, -1, 40]}), 422, "below min"),
    (_named_with(age={"data": [30, [1, [2]], 40]}), 400, "does not match"),
    (_named_with(age={"data": [30.5, 31, 40], "datatype": "INT64"}), 422, "integers"),
    (_named_with(age={"data": [True, False, True], "datatype": "FP64"}), 422, "expected numbers"),
    ({"inputs": [{"name": "m", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}, 400, "[N, 3]"),
    (
        {"inputs": [{"name": "m", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4]}]},
        400,
        "does not match",
    ),
    ({"inputs": [{"name": "m", "shape": [0, 3], "datatype": "FP64", "data": []}]}, 400, "no rows"),
    ({**_v2_named(ROWS), "outputs": [{"name": "logits"}]}, 400, "unknown output"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_V2)
async def test_v2_bad_input_matrix(lr: Any, body: Any, status: int, fragment: str) -> None:
    c, _, _ = lr
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = await c.post("/v2/models/credit/infer", **kwargs)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


BAD_V1 = [
    ({"instances": {}}, 400, "non-empty list"),
    ({"instances": [1, 2]}, 400, "object"),
    ({"instances": [{"age": 30, "income": 1}]}, 422, "missing feature 'score'"),
    ({"instances": [{"age": 30, "income": 1, "score": 0, "zip": 1}]}, 422, "unknown feature"),
    ({"instances": [{"age": "old", "income": 1, "score": 0}]}, 422, "expected numbers"),
    ({"instances": [[1, 2]]}, 422, "expected 3"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_V1)
async def test_v1_bad_input_matrix(lr: Any, body: Any, status: int, fragment: str) -> None:
    c, _, _ = lr
    r = await c.post("/v1/models/credit:predict", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


async def test_routing_errors_are_json_4xx(lr: Any) -> None:
    c, _, _ = lr
    r = await c.post("/v2/models/other/infer", json=_v2_named(ROWS))
    assert r.status_code == 404
    assert "'credit'" in r.json()["error"]
    assert (await c.post("/v1/models/other:predict", json={"instances": []})).status_code == 404
    assert (await c.post("/v2/models/credit/versions/9/infer", json=_v2_named(ROWS))).status_code == 404
    assert (await c.get("/v2/models/credit/infer")).status_code == 405
    assert (await c.get("/nowhere")).status_code == 404


async def test_oversized_body_is_413(lr: Any) -> None:
    c, _, _ = lr
    big = _v2_named([[30.0, 40_000.0, 0.5]] * 400)
    r = await c.post("/v2/models/credit/infer", json=big)
    assert r.status_code == 413
    assert "limit" in r.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    r = await c.post("/v2/models/credit/infer", content=chunks())  # no Content-Length: counted while read
    assert r.status_code == 413


async def test_nullable_feature_reaches_a_model_that_cannot_take_nan_as_422() -> None:
    app = _app(_served(LogisticRegression(), nullable_score=True))
    async for c in _client(app):
        r = await c.post("/v2/models/credit/infer", json=_named_with(score={"data": [0.1, None, 0.3]}))
        assert r.status_code == 422
        assert "rejected the input" in r.json()["error"]
        text = (await c.get("/metrics")).text
        assert 'code="422"' in text


# -- metrics ------------------------------------------------------------------------------------------


async def test_metrics_count_requests_bins_and_predictions(lr: Any) -> None:
    c, _, served = lr
    await c.post("/v2/models/credit/infer", json=_v2_named(ROWS))
    await c.post("/v1/models/credit:predict", json={"instances": [dict(zip(NAMES, ROWS[0], strict=True))]})
    await c.post("/v2/models/credit/infer", content=b"nope")
    text = (await c.get("/metrics")).text
    base = 'model="credit",version="3"'
    assert _metric(text, f'loopwright_predictor_requests_total{{{base},code="200"}}') == 2
    assert _metric(text, f'loopwright_predictor_requests_total{{{base},code="400"}}') == 1
    assert _metric(text, f"loopwright_predictor_request_duration_seconds_count{{{base}}}") == 3
    assert _metric(text, f"loopwright_predictor_predictions_total{{{base}}}") == 4
    # Feature bins agree with the profile's own binning of the same values.
    ages = np.array([r[0] for r in ROWS] + [ROWS[0][0]])
    expected = np.bincount(bin_numeric(ages, np.asarray(served.profile.features["age"].edges)), minlength=11)
    for i, n in enumerate(expected[: served.profile.features["age"].n_bins]):
        assert _metric(text, f'loopwright_predictor_feature_bin_total{{{base},feature="age",bin="{i}"}}') == n
    assert _metric(text, f'loopwright_predictor_feature_missing_total{{{base},feature="age"}}') == 0
    predicted = served.estimator.predict(np.array([*ROWS, ROWS[0]]))
    for cls in (0, 1):
        got = _metric(text, f'loopwright_predictor_prediction_bin_total{{{base},bin="{cls}"}}')
        assert got == int((predicted == cls).sum())
    for name in (
        "feedback_total",
        "feedback_correct_total",
        "feedback_abs_error_total",
        "feedback_squared_error_total",
    ):
        assert f"loopwright_predictor_{name}{{{base}}}" in text


def test_vectorised_binning_equals_profile_binning() -> None:
    served = _served(LogisticRegression(), nullable_score=True)
    app = _app(served)
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.uniform(0, 130, 500), rng.normal(50_000, 30_000, 500), rng.normal(0, 2, 500)])
    x[::7, 2] = np.nan
    edges = [served.profile.features[n].edges for n in NAMES]
    x[:9, 0] = edges[0][:9]  # values exactly on an edge go right
    metrics = app.plane.served.metrics  # type: ignore[union-attr]
    metrics.observe_batch(Batch(rows=500, numeric=x, categorical={}, missing_numeric=True), None)
    # The same rows again one request at a time: queued, flushed in groups, then on read.
    for row in x:
        one = row[None, :]
        metrics.observe_batch(
            Batch(rows=1, numeric=one, categorical={}, missing_numeric=bool(np.isnan(one).any())), None
        )
    for j, name in enumerate(NAMES):
        f = served.profile.features[name]
        want_counts, want_missing = f.count(x[:, j])
        counts, missing = metrics.feature_counts(name)
        assert counts == (2 * want_counts).tolist()
        assert missing == 2 * want_missing


# -- feedback -----------------------------------------------------------------------------------------


async def test_feedback_matches_ids_and_reports_unknown(lr: Any) -> None:
    c, _, _ = lr
    r = await c.post(
        "/v1/models/credit:predict", json={"instances": [dict(zip(NAMES, r, strict=True)) for r in ROWS]}
    )
    ids, predictions = r.json()["ids"], r.json()["predictions"]
    labels = [
        {"id": ids[0], "label": predictions[0]},  # correct
        {"id": ids[1], "label": 1 - predictions[1]},  # wrong
        {"id": "nope-1", "label": 1},
        {"id": ids[0], "label": predictions[0]},  # second label for the same prediction
    ]
    r = await c.post("/v1/models/credit/feedback", json={"labels": labels})
    assert r.status_code == 200, r.text
    assert r.json() == {"matched": 2, "unknown": ["nope-1"], "duplicate": [ids[0]]}
    text = (await c.get("/metrics")).text
    assert _metric(text, "loopwright_predictor_feedback_total{") == 2
    assert _metric(text, "loopwright_predictor_feedback_correct_total{") == 1
    bad = await c.post("/v1/models/credit/feedback", json={"labels": [{"label": 1}]})
    assert bad.status_code == 400
    assert (await c.post("/v1/models/other/feedback", json={"labels": []})).status_code == 404


@pytest.mark.parametrize(("token", "headers", "code"), [
    (TOKEN, {"authorization": "Bearer wrong-token-0123456789"}, 401),
    (TOKEN, {"authorization": f"Basic {TOKEN}"}, 401),
    (TOKEN, {"authorization": ""}, 401),
    (None, BEARER, 403),
])
async def test_feedback_needs_the_deployments_token(token: str | None, headers: dict[str, str],
                                                    code: int) -> None:
    app = _app(_served(LogisticRegression()), feedback_token=token)
    async for c in _client(app):
        r = await c.post("/v1/models/credit:predict", json={"instances": [list(ROWS[0])]})
        labels = [{"id": r.json()["ids"][0], "label": 1}]
        refused = await c.post("/v1/models/credit/feedback", json={"labels": labels}, headers=headers)
        assert refused.status_code == code
        assert "feedback" in refused.json()["error"]
        text = (await c.get("/metrics")).text
        assert _metric(text, "loopwright_predictor_feedback_total{") == 0  # nothing was counted
        if token is not None:
            assert refused.headers["www-authenticate"] == "Bearer"
            ok = await c.post("/v1/models/credit/feedback", json={"labels": labels})
            assert ok.json()["matched"] == 1


async def test_feedback_regression_errors() -> None:
    app = _app(_served(LinearRegression(), task=TaskType.REGRESSION))
    async for c in _client(app):
        r = await c.post("/v1/models/credit:predict", json={"instances": [list(ROWS[0]), list(ROWS[1])]})
        ids, predictions = r.json()["ids"], r.json()["predictions"]
        labels = [{"id": ids[0], "label": predictions[0] + 2}, {"id": ids[1], "label": predictions[1] - 1}]
        assert (await c.post("/v1/models/credit/feedback", json={"labels": labels})).json()["matched"] == 2
        text = (await c.get("/metrics")).text
        assert _metric(text, "loopwright_predictor_feedback_abs_error_total{") == pytest.approx(3)
        assert _metric(text, "loopwright_predictor_feedback_squared_error_total{") == pytest.approx(5)
        r = await c.post("/v1/models/credit/feedback", json={"labels": [{"id": ids[0], "label": "high"}]})
        assert r.status_code == 422


# -- the trainer's pipelines (DataFrame input, categorical features) ----------------------------------


def _trainer_like(model: Any, *, sparse_threshold: float) -> Any:
    """The shape of the trainer's model: ColumnTransformer(imputer+scaler, imputer+one-hot), model."""
    numeric = Pipeline(
        [("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]
    )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=sparse_threshold > 0)),
        ]
    )
    pre = ColumnTransformer(
        [("numeric", numeric, ["age", "score"]), ("categorical", categorical, ["region"])],
        sparse_threshold=sparse_threshold,
    )
    return Pipeline([("preprocess", pre), ("model", model)])


def _mixed_frame(n: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Twelve regions make the one-hot block sparse enough (density < 0.3) for a sparse output.
    known = ["north", "south", "east", "west", *(f"r{i}" for i in range(8))]
    regions = np.array([*known, "zeta"] if unseen else known)
    frame = pd.DataFrame(
        {
            "age": rng.uniform(18, 90, n),
            "score": rng.normal(0, 1, n),
            "region": rng.choice(regions, n).astype(object),
        }
    )
    frame.loc[frame.index[::9], "score"] = np.nan
    frame.loc[frame.index[::11], "region"] = np.nan
    return frame


def _mixed_served(model: Any, *, sparse_threshold: float) -> tuple[ServedModel, Any]:
    frame = _mixed_frame(600, 0)
    y = ((frame["score"].fillna(0) > 0) ^ (frame["region"] == "east")).astype(np.int64).to_numpy()
    classification = hasattr(model, "predict_proba")
    target = y if classification else frame["age"].to_numpy() * 0.1 + y
    pipeline = _trainer_like(model, sparse_threshold=sparse_threshold).fit(frame, target)
    schema = DatasetSchema(
        label=LabelSpec(name="y", task=TaskType.CLASSIFICATION if classification else TaskType.REGRESSION),
        columns=[
            ColumnSpec(name="age", type=ColumnType.NUMERIC),
            ColumnSpec(name="score", type=ColumnType.NUMERIC, nullable=True),
            ColumnSpec(name="region", type=ColumnType.CATEGORICAL, nullable=True),
        ],
    )
    predictions = pipeline.predict(frame)
    profile = Profile(
        rows=len(frame),
        features={
            "age": profile_numeric(frame["age"]),
            "score": profile_numeric(frame["score"]),
            "region": profile_categorical(frame["region"].to_numpy()),
        },
        prediction=(
            profile_categorical([str(p) for p in predictions], categories=["0", "1"])
            if classification
            else profile_numeric(predictions)
        ),
        schema=schema,
        task=schema.label.task,
    )
    return ServedModel(estimator=pipeline, profile=profile), pipeline


@pytest.mark.parametrize(
    ("model", "sparse_threshold"),
    [
        (LogisticRegression(), 0.0),
        (LogisticRegression(), 0.3),
        (RandomForestClassifier(n_estimators=10, random_state=0), 0.0),
        (LinearRegression(), 0.0),
    ],
)
def test_trainer_pipeline_replay_matches_the_pipeline(model: Any, sparse_threshold: float) -> None:
    served, pipeline = _mixed_served(model, sparse_threshold=sparse_threshold)
    assert served.estimator is pipeline
    assert served.form == "skops-compiled"
    assert pipeline.steps[0][1].sparse_output_ == (sparse_threshold > 0)
    frame = _mixed_frame(300, 5, unseen=True)
    batch = Batch(
        rows=len(frame),
        numeric=frame[["age", "score"]].to_numpy(),
        categorical={"region": [None if isinstance(v, float) else v for v in frame["region"]]},
        missing_numeric=True,
    )
    np.testing.assert_array_equal(served.predict(batch)[0].labels, pipeline.predict(frame))


async def test_trainer_pipeline_served_over_v1_and_v2() -> None:
    served, pipeline = _mixed_served(LogisticRegression(), sparse_threshold=0.3)
    app = _app(served)
    instances = [
        {"age": 40.0, "score": 0.3, "region": "east"},
        {"age": 70.0, "score": None, "region": None},
        {"age": 20.0, "score": -1.0, "region": "atlantis"},
    ]
    frame = pd.DataFrame(instances).astype({"score": float})
    frame["region"] = frame["region"].astype(object).where(frame["region"].notna(), np.nan)
    expected = pipeline.predict(frame).tolist()
    async for c in _client(app):
        r = await c.post("/v1/models/credit:predict", json={"instances": instances})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected
        body = {
            "inputs": [
                {"name": "age", "shape": [3], "datatype": "FP64", "data": [40.0, 70.0, 20.0]},
                {"name": "score", "shape": [3], "datatype": "FP64", "data": [0.3, None, -1.0]},
                {"name": "region", "shape": [3], "datatype": "BYTES", "data": ["east", None, "atlantis"]},
            ]
        }
        r = await c.post("/v2/models/credit/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == expected
        bad = {"inputs": [*body["inputs"][:2], {**body["inputs"][2], "data": [1.5, "a", "b"]}]}
        r = await c.post("/v2/models/credit/infer", json=bad)
        assert r.status_code == 422
        assert "categorical" in r.json()["error"]
        text = (await c.get("/metrics")).text
        # Region: one known, one missing, one unseen (the extra last bin).
        region = served.profile.features["region"]
        east = region.categories.index("east")  # type: ignore[union-attr]
        assert (
            _metric(
                text,
                f'loopwright_predictor_feature_bin_total{{model="credit",version="3",feature="region",bin="{east}"}}',
            )
            == 2
        )
        unseen_bin = len(region.categories)  # type: ignore[arg-type]
        assert (
            _metric(
                text,
                f'loopwright_predictor_feature_bin_total{{model="credit",version="3",feature="region",bin="{unseen_bin}"}}',
            )
            == 2
        )
        assert (
            _metric(
                text,
                'loopwright_predictor_feature_missing_total{model="credit",version="3",feature="region"}',
            )
            == 2
        )


async def test_accepts_the_body_mlservers_pandas_codec_sends() -> None:
    """Captured from MLServer 1.7.1: ``PandasCodec.encode_request`` plus a ``StringCodec`` input."""
    served, pipeline = _mixed_served(LogisticRegression(), sparse_threshold=0.0)
    body = (
        b'{"parameters":{"content_type":"pd"},"inputs":['
        b'{"name":"age","shape":[2,1],"datatype":"FP64","data":[40.0,70.0]},'
        b'{"name":"score","shape":[2,1],"datatype":"FP64","data":[0.3,-1.0]},'
        b'{"name":"region","shape":[2,1],"datatype":"BYTES","parameters":{"content_type":"str"},'
        b'"data":["east","west"]}]}'
    )
    frame = pd.DataFrame({"age": [40.0, 70.0], "score": [0.3, -1.0], "region": ["east", "west"]})
    async for c in _client(_app(served)):
        r = await c.post("/v2/models/credit/infer", content=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == pipeline.predict(frame.astype({"region": object})).tolist()


async def test_metrics_text_parses_as_prometheus_exposition(lr: Any) -> None:
    c, _, _ = lr
    await c.post("/v2/models/credit/infer", json=_v2_named(ROWS))
    text = (await c.get("/metrics")).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "loopwright_predictor_requests": "counter",
        "loopwright_predictor_request_duration_seconds": "histogram",
        "loopwright_predictor_feature_bin": "counter",
        "loopwright_predictor_feature_missing": "counter",
        "loopwright_predictor_prediction_bin": "counter",
        "loopwright_predictor_predictions": "counter",
        "loopwright_predictor_feedback": "counter",
        "loopwright_predictor_feedback_correct": "counter",
        "loopwright_predictor_feedback_abs_error": "counter",
        "loopwright_predictor_feedback_squared_error": "counter",
    }
    assert {name: families[name].type for name in expected} == expected
    # Prometheus' naming convention: every counter sample ends in _total.
    counters = [s.name for f in families.values() if f.type == "counter" for s in f.samples]
    assert counters
    assert all(name.endswith("_total") for name in counters), counters
    for family in families.values():
        for sample in family.samples:
            assert sample.labels["model"] == "credit"
            assert sample.labels["version"] == "3"


def test_categorical_decoding_and_allowed_values() -> None:
    schema = DatasetSchema(
        label=LabelSpec(name="y", task=TaskType.CLASSIFICATION),
        columns=[
            ColumnSpec(name="x", type=ColumnType.NUMERIC),
            ColumnSpec(name="color", type=ColumnType.CATEGORICAL, allowed_values=["1", "2", "red"]),
            ColumnSpec(name="flag", type=ColumnType.CATEGORICAL, nullable=True),
        ],
    )
    decoder = Decoder(schema=schema)

    def v2(color: dict[str, Any], flag: dict[str, Any]) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]},
                {"name": "color", "shape": [2], **color},
                {"name": "flag", "shape": [2], **flag},
            ]
        }

    batch = decoder.decode_v2(
        v2({"datatype": "INT64", "data": [1, 2]}, {"datatype": "BOOL", "data": [True, None]})
    )
    assert batch.categorical == {"color": ["1", "2"], "flag": ["True", None]}
    batch = decoder.decode_v1({"instances": [{"x": 1, "color": "red"}, {"x": 2, "color": 1, "flag": "on"}]})
    assert batch.categorical == {"color": ["red", "1"], "flag": [None, "on"]}
    for color, fragment in (
        ({"datatype": "BYTES", "data": ["red", "blue"]}, "not an allowed value"),
        ({"datatype": "FP64", "data": [1.5, 2.0]}, "categorical"),
        ({"datatype": "BYTES", "data": ["red", None]}, "missing value"),
    ):
        with pytest.raises(RequestError, match=fragment) as info:
            decoder.decode_v2(v2(color, {"datatype": "BYTES", "data": ["a", "b"]}))
        assert info.value.status == 422
