"""Good and bad objects for every schema rule of the CRDs: one table, several judges.

Each case is ``(kind, description, object, should_be_accepted)`` plus, for update
rules such as ModelVersion immutability, the ``old`` object it replaces. The unit
tests run the table through the generated CRD schemas (CEL evaluated with
cel-python) and through the pydantic models; tests/e2e can apply the same objects
to a real API server (create ``old`` first, then update it to ``object``).
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

API_VERSION = "loopwright.dev/v1alpha1"
SHA = "0" * 64


class CelCase(NamedTuple):
    kind: str
    description: str
    object: dict[str, Any]
    should_be_accepted: bool
    old: dict[str, Any] | None = None


def _manifest(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``value`` at the dotted ``path`` (``...`` deletes the key)."""
    out = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = out
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


DATASET = _manifest(
    "Dataset",
    "churn",
    {
        "source": {"uri": "s3://loopwright/data/churn.csv", "format": "csv"},
        "schema": {
            "label": {"name": "churned", "task": "classification"},
            "columns": [
                {"name": "tenure", "type": "numeric", "min": 0, "max": 120},
                {"name": "plan", "type": "categorical", "allowedValues": ["basic", "premium"]},
            ],
        },
        "validation": {"minRows": 100, "maxMissingFraction": 0.05},
        "refreshInterval": "10m",
    },
)

PIPELINE = _manifest(
    "TrainingPipeline",
    "churn",
    {
        "datasetRef": {"name": "churn"},
        "model": {"name": "churn", "estimator": "LogisticRegression", "params": {"C": 1.0, "max_iter": 200}},
        "split": {"testFraction": 0.25, "seed": 7, "stratify": True},
        "metrics": ["accuracy", "f1_macro"],
        "validation": {
            "thresholds": [{"metric": "accuracy", "min": 0.7}],
            "champion": {"margin": 0.01, "whenNoChampion": "Pass"},
        },
        "triggers": {"schedule": "0 3 * * *", "onNewData": True, "cooldown": "30m"},
    },
)

BYO_PIPELINE = _with(PIPELINE, "spec.model", {
    "name": "churn", "factory": "churn_features.model:make", "image": "example.com/churn-features:1",
    "trustedTypes": ["churn_features.model.TenureRatio"], "params": {"clf__C": 0.5}})

SEARCH_PIPELINE = _with(PIPELINE, "spec.search", {
    "strategy": "random", "trials": 16, "parallelism": 4, "seed": 3,
    "space": {"C": {"min": 0.01, "max": 100.0, "log": True}, "max_iter": {"values": [100, 200]}}})

MODEL_VERSION = _manifest(
    "ModelVersion",
    "churn-v1",
    {
        "model": "churn",
        "version": 1,
        "artifact": {"uri": "s3://loopwright/models/default/churn/runs/churn-1/model.skops", "sha256": SHA},
        "metrics": {"accuracy": 0.91, "f1_macro": 0.88},
        "primaryMetric": {"name": "accuracy", "value": 0.91},
    },
)

DEPLOYMENT = _manifest(
    "Deployment",
    "churn",
    {
        "model": "churn",
        "version": "latest",
        "rollout": {"steps": [{"weight": 10, "pause": "2m"}, {"weight": 50, "pause": "2m"}, {"weight": 100}]},
    },
)

DRIFT_POLICY = _manifest(
    "DriftPolicy",
    "churn",
    {
        "deploymentRef": {"name": "churn"},
        "interval": "5m",
        "window": "1h",
        "actions": {"retrain": {"pipelineRef": {"name": "churn"}, "cooldown": "6h"}},
    },
)

ANALYSIS_TEMPLATE = _manifest(
    "AnalysisTemplate",
    "slo",
    {
        "prometheus": [
            {
                "name": "http-5xx",
                "address": "http://prometheus.monitoring:9090",
                "query": 'sum(rate(http_requests_total{code=~"5..",version="{{version}}"}[2m]))',
                "max": 0.5,
                "headers": [{"name": "X-Scope-OrgID", "value": "team-a"}],
                "secretRef": {"name": "prom-token"},
            },
        ]
    },
)

_GATEWAY = {"mode": "gatewayAPI", "gateway": {"parentRef": {"name": "public"}}}

CASES: list[CelCase] = [
    # Dataset
    CelCase("Dataset", "the reference dataset", DATASET, True),
    CelCase(
        "Dataset",
        "a prefix source in parquet",
        _with(DATASET, "spec.source", {"uri": "s3://loopwright/data/churn/", "format": "parquet"}),
        True,
    ),
    CelCase(
        "Dataset",
        "min above max on a column",
        _with(DATASET, "spec.schema.columns", [{"name": "tenure", "type": "numeric", "min": 10, "max": 1}]),
        False,
    ),
    CelCase(
        "Dataset",
        "min equal to max is fine",
        _with(DATASET, "spec.schema.columns", [{"name": "tenure", "type": "numeric", "min": 1, "max": 1}]),
        True,
    ),
    CelCase(
        "Dataset",
        "allowedValues on a numeric column",
        _with(
            DATASET, "spec.schema.columns", [{"name": "tenure", "type": "numeric", "allowedValues": ["1"]}]
        ),
        False,
    ),
    CelCase(
        "Dataset",
        "min on a categorical column",
        _with(DATASET, "spec.schema.columns", [{"name": "plan", "type": "categorical", "min": 0}]),
        False,
    ),
    CelCase(
        "Dataset",
        "the label listed as a feature",
        _with(DATASET, "spec.schema.columns", [{"name": "churned", "type": "categorical"}]),
        False,
    ),
    CelCase(
        "Dataset",
        "duplicate column names",
        _with(
            DATASET,
            "spec.schema.columns",
            [{"name": "plan", "type": "categorical"}, {"name": "plan", "type": "numeric"}],
        ),
        False,
    ),
    CelCase(
        "Dataset", "an https source", _with(DATASET, "spec.source.uri", "https://example.com/a.csv"), False
    ),
    CelCase("Dataset", "an unknown format", _with(DATASET, "spec.source.format", "json"), False),
    CelCase(
        "Dataset",
        "maxMissingFraction above 1",
        _with(DATASET, "spec.validation.maxMissingFraction", 1.5),
        False,
    ),
    CelCase("Dataset", "a refresh interval in days", _with(DATASET, "spec.refreshInterval", "1d"), False),
    # TrainingPipeline
    CelCase("TrainingPipeline", "the reference pipeline", PIPELINE, True),
    CelCase(
        "TrainingPipeline",
        "defaults only",
        _manifest(
            "TrainingPipeline",
            "p",
            {"datasetRef": {"name": "d"}, "model": {"name": "m", "estimator": "RandomForestClassifier"}},
        ),
        True,
    ),
    CelCase("TrainingPipeline", "testFraction 0", _with(PIPELINE, "spec.split.testFraction", 0), False),
    CelCase("TrainingPipeline", "testFraction 1", _with(PIPELINE, "spec.split.testFraction", 1.0), False),
    CelCase(
        "TrainingPipeline", "testFraction negative", _with(PIPELINE, "spec.split.testFraction", -0.1), False
    ),
    CelCase(
        "TrainingPipeline", "testFraction 0.999", _with(PIPELINE, "spec.split.testFraction", 0.999), True
    ),
    CelCase(
        "TrainingPipeline",
        "a threshold without bounds",
        _with(PIPELINE, "spec.validation.thresholds", [{"metric": "accuracy"}]),
        False,
    ),
    CelCase(
        "TrainingPipeline",
        "a threshold with min above max",
        _with(PIPELINE, "spec.validation.thresholds", [{"metric": "rmse", "min": 3, "max": 2}]),
        False,
    ),
    CelCase(
        "TrainingPipeline",
        "a max-only threshold",
        _with(PIPELINE, "spec.validation.thresholds", [{"metric": "rmse", "max": 2}]),
        True,
    ),
    CelCase(
        "TrainingPipeline",
        "two thresholds on one metric",
        _with(
            PIPELINE,
            "spec.validation.thresholds",
            [{"metric": "accuracy", "min": 0.5}, {"metric": "accuracy", "max": 0.99}],
        ),
        False,
    ),
    CelCase("TrainingPipeline", "an unknown metric", _with(PIPELINE, "spec.metrics", ["auc"]), False),
    CelCase(
        "TrainingPipeline",
        "a repeated metric",
        _with(PIPELINE, "spec.metrics", ["accuracy", "accuracy"]),
        False,
    ),
    CelCase(
        "TrainingPipeline",
        "whenNoChampion Reject",
        _with(PIPELINE, "spec.validation.champion.whenNoChampion", "Reject"),
        True,
    ),
    CelCase(
        "TrainingPipeline",
        "whenNoChampion Maybe",
        _with(PIPELINE, "spec.validation.champion.whenNoChampion", "Maybe"),
        False,
    ),
    CelCase(
        "TrainingPipeline",
        "a negative champion margin",
        _with(PIPELINE, "spec.validation.champion.margin", -0.1),
        False,
    ),
    CelCase(
        "TrainingPipeline",
        "a schedule with 4 fields",
        _with(PIPELINE, "spec.triggers.schedule", "0 3 * *"),
        False,
    ),
    CelCase(
        "TrainingPipeline", "an @daily schedule", _with(PIPELINE, "spec.triggers.schedule", "@daily"), True
    ),
    CelCase(
        "TrainingPipeline", "a model name with capitals", _with(PIPELINE, "spec.model.name", "Churn"), False
    ),
    CelCase("TrainingPipeline", "a schedule in Europe/Berlin",
            _with(PIPELINE, "spec.triggers.timeZone", "Europe/Berlin"), True),
    CelCase("TrainingPipeline", "a time zone with a space",
            _with(PIPELINE, "spec.triggers.timeZone", "Europe/New York"), False),
    CelCase("TrainingPipeline", "a time zone without a schedule",
            _with(_with(PIPELINE, "spec.triggers.schedule", ...), "spec.triggers.timeZone", "UTC"), False),
    CelCase("TrainingPipeline", "a factory in its own image", BYO_PIPELINE, True),
    CelCase("TrainingPipeline", "both an estimator and a factory",
            _with(BYO_PIPELINE, "spec.model.estimator", "LogisticRegression"), False),
    CelCase("TrainingPipeline", "neither estimator nor factory", _with(PIPELINE, "spec.model.estimator", ...),
            False),
    CelCase("TrainingPipeline", "a factory without an image", _with(BYO_PIPELINE, "spec.model.image", ...),
            False),
    CelCase("TrainingPipeline", "a factory that is not module:function",
            _with(BYO_PIPELINE, "spec.model.factory", "churn_features.make"), False),
    CelCase("TrainingPipeline", "trusted types for an allow-listed estimator",
            _with(PIPELINE, "spec.model.trustedTypes", ["numpy.float64"]), False),
    CelCase("TrainingPipeline", "a trusted type that is no dotted name",
            _with(BYO_PIPELINE, "spec.model.trustedTypes", ["eval"]), False),
    CelCase("TrainingPipeline", "a random search over a range and values", SEARCH_PIPELINE, True),
    CelCase("TrainingPipeline", "a grid search",
            _with(SEARCH_PIPELINE, "spec.search", {"strategy": "grid", "space": {"C": {"values": [0.1, 1]}}}),
            True),
    CelCase("TrainingPipeline", "a grid search over a range",
            _with(SEARCH_PIPELINE, "spec.search.strategy", "grid"), False),
    CelCase("TrainingPipeline", "a grid search with a trial count",
            _with(SEARCH_PIPELINE, "spec.search",
                  {"strategy": "grid", "trials": 4, "space": {"C": {"values": [0.1, 1]}}}), False),
    CelCase("TrainingPipeline", "65 trials", _with(SEARCH_PIPELINE, "spec.search.trials", 65), False),
    CelCase("TrainingPipeline", "parallelism 17", _with(SEARCH_PIPELINE, "spec.search.parallelism", 17),
            False),
    CelCase("TrainingPipeline", "a space key that is no parameter name",
            _with(SEARCH_PIPELINE, "spec.search.space", {"C-1": {"values": [1]}}), False),
    CelCase("TrainingPipeline", "a range without max",
            _with(SEARCH_PIPELINE, "spec.search.space.C", {"min": 0.1}), False),
    CelCase("TrainingPipeline", "an integer range",
            _with(SEARCH_PIPELINE, "spec.search.space.max_iter", {"min": 50, "max": 500, "integer": True}),
            True),
    CelCase("TrainingPipeline", "a range upside down",
            _with(SEARCH_PIPELINE, "spec.search.space.C", {"min": 1.0, "max": 0.1}), False),
    CelCase("TrainingPipeline", "a log range from 0",
            _with(SEARCH_PIPELINE, "spec.search.space.C", {"min": 0.0, "max": 1.0, "log": True}), False),
    CelCase("TrainingPipeline", "a startingDeadline", _with(PIPELINE, "spec.triggers.startingDeadline", "1h"),
            True),
    CelCase(
        "TrainingPipeline", "backoffLimit above 10", _with(PIPELINE, "spec.job", {"backoffLimit": 11}), False
    ),
    # ModelVersion
    CelCase("ModelVersion", "the reference model version", MODEL_VERSION, True),
    CelCase("ModelVersion", "a factory's model in its own image with its own types",
            _with(_with(MODEL_VERSION, "spec.image", "example.com/churn-features:1"),
                  "spec.artifact.trustedTypes", ["churn_features.model.TenureRatio"]), True),
    CelCase("ModelVersion", "an image reference with spaces",
            _with(MODEL_VERSION, "spec.image", "my image"), False),
    CelCase(
        "ModelVersion",
        "a primary metric that is not among the metrics",
        _with(MODEL_VERSION, "spec.primaryMetric", {"name": "rmse", "value": 0.91}),
        False,
    ),
    CelCase(
        "ModelVersion",
        "a primary metric with another value",
        _with(MODEL_VERSION, "spec.primaryMetric", {"name": "accuracy", "value": 0.5}),
        False,
    ),
    CelCase("ModelVersion", "version 0", _with(MODEL_VERSION, "spec.version", 0), False),
    CelCase("ModelVersion", "a short sha256", _with(MODEL_VERSION, "spec.artifact.sha256", "abc"), False),
    CelCase(
        "ModelVersion", "a pickle artifact", _with(MODEL_VERSION, "spec.artifact.format", "pickle"), False
    ),
    CelCase(
        "ModelVersion",
        "an update that changes the metrics",
        _with(MODEL_VERSION, "spec.metrics.f1_macro", 0.99),
        False,
        old=MODEL_VERSION,
    ),
    CelCase(
        "ModelVersion",
        "an update that changes the artifact",
        _with(MODEL_VERSION, "spec.artifact.sha256", "1" * 64),
        False,
        old=MODEL_VERSION,
    ),
    CelCase(
        "ModelVersion",
        "an update that changes only metadata",
        _with(MODEL_VERSION, "metadata.labels", {"team": "churn"}),
        True,
        old=MODEL_VERSION,
    ),
    # Deployment
    CelCase("Deployment", "the reference deployment", DEPLOYMENT, True),
    CelCase("Deployment", "defaults only", _manifest("Deployment", "d", {"model": "churn"}), True),
    CelCase("Deployment", "a pod template overlay", _with(DEPLOYMENT, "spec.podTemplate", {
        "nodeSelector": {"pool": "inference"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone"}],
        "serviceAccountName": "predictor", "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "high", "resources": {"requests": {"cpu": "1"}},
        "labels": {"team": "fraud"}, "annotations": {"example.com/owner": "ml"}}), True),
    CelCase("Deployment", "a pod template label under loopwright.dev/",
            _with(DEPLOYMENT, "spec.podTemplate", {"labels": {"loopwright.dev/deployment": "other"}}), False),
    CelCase("Deployment", "a pod template annotation under app.kubernetes.io/",
            _with(DEPLOYMENT, "spec.podTemplate", {"annotations": {"app.kubernetes.io/name": "x"}}), False),
    CelCase("Deployment", "a pinned integer version", _with(DEPLOYMENT, "spec.version", 3), True),
    CelCase("Deployment", "a pinned version as a string", _with(DEPLOYMENT, "spec.version", "12"), True),
    CelCase("Deployment", "version 0", _with(DEPLOYMENT, "spec.version", 0), False),
    CelCase("Deployment", "version -2", _with(DEPLOYMENT, "spec.version", -2), False),
    CelCase("Deployment", "version 'newest'", _with(DEPLOYMENT, "spec.version", "newest"), False),
    CelCase("Deployment", "version '03'", _with(DEPLOYMENT, "spec.version", "03"), False),
    CelCase(
        "Deployment",
        "decreasing step weights",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": 50}, {"weight": 10}]),
        False,
    ),
    CelCase(
        "Deployment",
        "equal step weights",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": 20}, {"weight": 20}]),
        False,
    ),
    CelCase(
        "Deployment",
        "a decrease at the last of ten steps",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": w} for w in (1, 2, 3, 4, 5, 6, 7, 8, 90, 80)]),
        False,
    ),
    CelCase(
        "Deployment",
        "ten increasing steps",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": w} for w in (1, 2, 3, 4, 5, 6, 7, 8, 90, 100)]),
        True,
    ),
    CelCase(
        "Deployment",
        "eleven steps",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": w} for w in range(1, 12)]),
        False,
    ),
    CelCase(
        "Deployment",
        "a weight above 100",
        _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": 50}, {"weight": 150}]),
        False,
    ),
    CelCase("Deployment", "a weight of 0", _with(DEPLOYMENT, "spec.rollout.steps", [{"weight": 0}]), False),
    CelCase("Deployment", "no steps", _with(DEPLOYMENT, "spec.rollout.steps", []), False),
    CelCase(
        "Deployment",
        "promote and abort the same version",
        _with(DEPLOYMENT, "spec.rollout", {"promote": {"version": 4}, "abort": {"version": 4}}),
        False,
    ),
    CelCase(
        "Deployment",
        "promote one version and abort another",
        _with(DEPLOYMENT, "spec.rollout", {"promote": {"version": 5}, "abort": {"version": 4}}),
        True,
    ),
    CelCase(
        "Deployment",
        "gatewayAPI without a gateway",
        _with(DEPLOYMENT, "spec.traffic", {"mode": "gatewayAPI"}),
        False,
    ),
    CelCase("Deployment", "gatewayAPI with a gateway", _with(DEPLOYMENT, "spec.traffic", _GATEWAY), True),
    CelCase(
        "Deployment", "an unknown traffic mode", _with(DEPLOYMENT, "spec.traffic", {"mode": "istio"}), False
    ),
    CelCase("Deployment", "autoscaling between 1 and 3 pods at 50% CPU",
            _with(DEPLOYMENT, "spec.autoscaling",
                  {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}), True),
    CelCase("Deployment", "autoscaling with a requests-per-second target",
            _with(DEPLOYMENT, "spec.autoscaling", {"maxReplicas": 5, "targetRequestsPerSecond": 20}), True),
    CelCase("Deployment", "autoscaling with min equal to max",
            _with(DEPLOYMENT, "spec.autoscaling", {"minReplicas": 2, "maxReplicas": 2}), True),
    CelCase("Deployment", "autoscaling with min above max",
            _with(DEPLOYMENT, "spec.autoscaling", {"minReplicas": 4, "maxReplicas": 3}), False),
    CelCase("Deployment", "autoscaling with min 0",
            _with(DEPLOYMENT, "spec.autoscaling", {"minReplicas": 0, "maxReplicas": 3}), False),
    CelCase("Deployment", "autoscaling without max",
            _with(DEPLOYMENT, "spec.autoscaling", {"minReplicas": 1}), False),
    CelCase("Deployment", "autoscaling with a CPU target of 0",
            _with(DEPLOYMENT, "spec.autoscaling", {"maxReplicas": 3, "targetCPUUtilizationPercentage": 0}),
            False),
    CelCase(
        "Deployment",
        "latencyP95 without a bound",
        _with(DEPLOYMENT, "spec.rollout.analysis", {"metrics": {"latencyP95": {}}}),
        False,
    ),
    CelCase(
        "Deployment",
        "latencyP95 relative to stable",
        _with(DEPLOYMENT, "spec.rollout.analysis", {"metrics": {"latencyP95": {"maxRelativeToStable": 1.5}}}),
        True,
    ),
    CelCase(
        "Deployment",
        "an error rate above 1",
        _with(DEPLOYMENT, "spec.rollout.analysis", {"metrics": {"errorRate": {"max": 2}}}),
        False,
    ),
    CelCase(
        "Deployment",
        "a Prometheus check without bounds",
        _with(
            DEPLOYMENT,
            "spec.rollout.analysis",
            {"metrics": {"prometheus": [{"name": "up", "address": "http://prometheus:9090", "query": "up"}]}},
        ),
        False,
    ),
    CelCase(
        "Deployment",
        "a Prometheus check with min above max",
        _with(
            DEPLOYMENT,
            "spec.rollout.analysis",
            {
                "metrics": {
                    "prometheus": [
                        {"name": "up", "address": "http://prometheus:9090", "query": "up", "min": 2, "max": 1}
                    ]
                }
            },
        ),
        False,
    ),
    CelCase(
        "Deployment",
        "a Prometheus check with a max",
        _with(
            DEPLOYMENT,
            "spec.rollout.analysis",
            {
                "metrics": {
                    "prometheus": [
                        {"name": "up", "address": "http://prometheus:9090", "query": "up", "max": 1}
                    ]
                }
            },
        ),
        True,
    ),
    CelCase(
        "Deployment",
        "a capture fraction above 1",
        _with(DEPLOYMENT, "spec.capture", {"fraction": 1.5}),
        False,
    ),
    CelCase(
        "Deployment",
        "Prometheus checks with headers, a Secret and a shared template",
        _with(
            DEPLOYMENT,
            "spec.rollout.analysis",
            {
                "templates": [{"name": "slo"}],
                "metrics": {
                    "prometheus": [
                        {
                            "name": "p99",
                            "address": "https://thanos:10902",
                            "query": "q",
                            "max": 0.2,
                            "headers": [{"name": "X-Scope-OrgID", "value": "a"}],
                            "secretRef": {"name": "prom"},
                        },
                        {
                            "name": "saturation",
                            "address": "http://prometheus:9090",
                            "query": "q",
                            "min": 0,
                            "max": 1,
                        },
                    ]
                },
            },
        ),
        True,
    ),
    CelCase(
        "Deployment",
        "a credential inline in a Prometheus header",
        _with(
            DEPLOYMENT,
            "spec.rollout.analysis",
            {
                "metrics": {
                    "prometheus": [
                        {
                            "name": "p99",
                            "address": "http://prometheus:9090",
                            "query": "q",
                            "max": 1,
                            "headers": [{"name": "Authorization", "value": "Bearer abc"}],
                        },
                    ]
                }
            },
        ),
        False,
    ),
    # AnalysisTemplate
    CelCase("AnalysisTemplate", "checks with headers and a Secret", ANALYSIS_TEMPLATE, True),
    CelCase("AnalysisTemplate", "no checks", _with(ANALYSIS_TEMPLATE, "spec.prometheus", []), False),
    CelCase(
        "AnalysisTemplate",
        "a check without bounds",
        _with(
            ANALYSIS_TEMPLATE, "spec.prometheus", [{"name": "x", "address": "http://p:9090", "query": "q"}]
        ),
        False,
    ),
    CelCase(
        "AnalysisTemplate",
        "a cookie inline",
        _with(
            ANALYSIS_TEMPLATE,
            "spec.prometheus",
            [
                {
                    "name": "x",
                    "address": "http://p:9090",
                    "query": "q",
                    "max": 1,
                    "headers": [{"name": "cookie", "value": "s"}],
                }
            ],
        ),
        False,
    ),
    # DriftPolicy
    CelCase("DriftPolicy", "the reference policy", DRIFT_POLICY, True),
    *(CelCase("DriftPolicy", f"a webhook to {url}",
              _with(DRIFT_POLICY, "spec.actions.webhook", {"url": url}), ok)
      for url, ok in [
          ("http://169.254.169.254/latest/meta-data/", False),
          ("http://[fd00:ec2::254]/", False),
          ("http://METADATA.google.internal/computeMetadata/v1/", False),
          ("http://metadata/", False),
          ("http://user@169.254.170.2/v2/credentials", False),
          ("http://[fe80::1]:80/", False),
          ("https://hooks.example.com/loopwright", True),
          ("http://metadata.example.com/hook", True),
          ("http://10.0.0.5:8080/hook", True),
      ]),
    CelCase("Deployment", "a Prometheus check at the metadata address", _with(
        DEPLOYMENT, "spec.rollout.analysis", {"metrics": {"prometheus": [
            {"name": "up", "address": "http://169.254.169.254:9090", "query": "up", "min": 1}]}}), False),
    CelCase(
        "DriftPolicy",
        "a window shorter than the interval",
        _with(_with(DRIFT_POLICY, "spec.window", "10m"), "spec.interval", "1h"),
        False,
    ),
    CelCase(
        "DriftPolicy",
        "a window equal to the interval",
        _with(_with(DRIFT_POLICY, "spec.window", "90m"), "spec.interval", "1h30m"),
        True,
    ),
    CelCase(
        "DriftPolicy",
        "a window shorter than the default interval",
        _with(DRIFT_POLICY, "spec.window", "1m"),
        False,
    ),
    CelCase("DriftPolicy", "driftShare 0", _with(DRIFT_POLICY, "spec.driftShare", 0), False),
    CelCase(
        "DriftPolicy", "an unknown method", _with(DRIFT_POLICY, "spec.features", {"method": "ks"}), False
    ),
    CelCase(
        "DriftPolicy",
        "jensenShannon with overrides",
        _with(
            DRIFT_POLICY,
            "spec.features",
            {
                "method": "jensenShannon",
                "threshold": 0.2,
                "overrides": [{"feature": "tenure", "threshold": 0.3}, {"feature": "plan", "ignore": True}],
            },
        ),
        True,
    ),
    CelCase(
        "DriftPolicy",
        "two overrides for one feature",
        _with(
            DRIFT_POLICY,
            "spec.features",
            {"overrides": [{"feature": "tenure", "ignore": True}, {"feature": "tenure", "threshold": 0.1}]},
        ),
        False,
    ),
    CelCase("DriftPolicy", "consecutive 0", _with(DRIFT_POLICY, "spec.consecutive", 0), False),
    CelCase(
        "DriftPolicy",
        "a webhook that is not http",
        _with(DRIFT_POLICY, "spec.actions.webhook", {"url": "ftp://hooks"}),
        False,
    ),
    CelCase(
        "DriftPolicy",
        "performance on accuracy",
        _with(DRIFT_POLICY, "spec.performance", {"metric": "accuracy", "maxDrop": 0.05, "minLabels": 200}),
        True,
    ),
]
