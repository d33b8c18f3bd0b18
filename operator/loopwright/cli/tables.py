"""``versions``, ``lineage`` and ``drift``: the registry as a table (as MLflow lists runs), one
version's path from data to serving, and a policy's checks per feature (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from loopwright.cli import fmt, views
from loopwright.cli.fmt import Obj, dig, name
from loopwright.cli.loop import Loop, production
from loopwright.cli.style import Health
from loopwright.cli.table import Cell, Node

METRIC_COLUMNS = 4
HISTORY_MARKS = 10


# -- versions ---------------------------------------------------------------------------------------

def metric_names(versions: Sequence[Obj]) -> list[str]:
    """Metric columns: the primary metrics first (most used), then the others by name."""
    primaries = [dig(v, "spec", "primaryMetric", "name") for v in versions]
    counts = {m: primaries.count(m) for m in primaries if m}
    others = sorted({k for v in versions for k in dig(v, "spec", "metrics") or {}} - set(counts))
    return sorted(counts, key=lambda m: -counts[m]) + others


def version_record(version: Obj, loop: Loop) -> dict[str, Any]:
    """One registry row with raw values (``-o json``)."""
    spec, status = version.get("spec") or {}, version.get("status") or {}
    run_name = dig(spec, "lineage", "pipeline", "run")
    run = loop.runs().get(str(run_name))
    return {
        "name": name(version), "version": spec.get("version"), "phase": status.get("phase"),
        "datasetVersion": dig(spec, "lineage", "dataset", "version"), "run": run_name,
        "trigger": run[1].get("trigger") if run else None, "metrics": spec.get("metrics") or {},
        "primaryMetric": dig(spec, "primaryMetric", "name"),
        "gate": [{k: c.get(k) for k in ("name", "passed", "value", "threshold", "message")}
                 for c in status.get("checks") or ()],
        "champion": status.get("champion"), "aliases": status.get("aliases") or [],
        "created": dig(version, "metadata", "creationTimestamp"),
    }


def versions(loop: Loop, now: datetime) -> tuple[list[str], list[list[Cell]]]:
    columns = metric_names(loop.versions)
    shown = columns[:METRIC_COLUMNS]
    headers = ["VERSION", "PHASE", "DATASET", "RUN", "TRIGGER", *(m.upper() for m in shown), "GATE",
               "ALIASES", "CREATED"]
    best = _best(loop.versions, shown)
    rows = []
    for version in loop.versions:
        record = version_record(version, loop)
        phase = str(record["phase"] or "Pending")
        gate = views.gate(version)
        metrics = record["metrics"]
        rows.append([
            Cell(name(version), Health.OK if record["aliases"] else Health.NONE),
            Cell(phase, views.version_health(phase)),
            Cell(fmt.digest(record["datasetVersion"])), Cell(str(record["run"] or "-")),
            Cell(str(record["trigger"] or "-")),
            *(Cell(fmt.number(metrics.get(m)) if m in metrics else "-",
                   Health.OK if best.get(m) == name(version) else Health.NONE) for m in shown),
            Cell(gate.text.removeprefix("gate "), gate.health),
            Cell(", ".join(record["aliases"]) or "-"), Cell(fmt.age(record["created"], now)),
        ])
    return headers, rows


def _best(items: Sequence[Obj], metrics: Sequence[str]) -> dict[str, str]:
    """The version with the best value of each metric (lower is better for losses and errors)."""
    lower = {"log_loss", "mae", "rmse"}
    out: dict[str, str] = {}
    for metric in metrics:
        scored = [(float(v["spec"]["metrics"][metric]), name(v)) for v in items
                  if isinstance(dig(v, "spec", "metrics", metric), int | float)]
        if len(scored) > 1:
            out[metric] = (min(scored) if metric in lower else max(scored))[1]
    return out


# -- lineage ----------------------------------------------------------------------------------------

def lineage(version: Obj, loop: Loop, now: datetime) -> list[Node]:
    """Dataset ─ data version ─ pipeline ─ run ─ the version (artifact, gate, report) ─ serving."""
    spec = version.get("spec") or {}
    dataset_name = dig(spec, "lineage", "dataset", "name")
    digest = dig(spec, "lineage", "dataset", "version")
    dataset = next((d for d in loop.datasets if name(d) == dataset_name), None)
    pipeline_name = dig(spec, "lineage", "pipeline", "name")
    run_name = dig(spec, "lineage", "pipeline", "run")
    pipeline = next((p for p in loop.pipelines if name(p) == pipeline_name), None)
    run = loop.runs().get(str(run_name))

    leaf = version_detail(version, now)
    for deployment in loop.deployments:
        node = serving_node(deployment, version, loop, now)
        if node is not None:
            leaf.children.append(node)
    chain = leaf
    if run_name:
        run_node = (views.run_node(run[1], now) if run else
                    Node(str(run_name), "Run", Health.UNKNOWN, "gone", "", "pruned from the runs"))
        run_node.info = fmt.joined([run_node.info, dig(spec, "lineage", "image")])
        run_node.children, chain = [chain], run_node
    if pipeline_name:
        params = dig(spec, "lineage", "params") or {}
        seed = dig(spec, "lineage", "seed")
        node = Node(str(pipeline_name), "TrainingPipeline", *(views.ready(pipeline) if pipeline else
                                                               (Health.UNKNOWN, "deleted")),
                    views.created(pipeline, now) if pipeline else "",
                    fmt.joined([dig(spec, "lineage", "estimator") or dig(spec, "lineage", "factory"),
                                " ".join(f"{k}={v}" for k, v in sorted(params.items())) or None,
                                f"seed {seed}" if seed is not None else None]))
        node.children, chain = [chain], node
    if digest or dataset_name:
        data = views.data_version_node(dataset, digest, now)
        data.children, chain = [chain], data
    if dataset is not None:
        root = views.dataset_node(dataset, now)
        root.info = fmt.joined([f"{dig(dataset, 'spec', 'source', 'uri')} "
                                f"({dig(dataset, 'spec', 'source', 'format') or 'csv'})", root.info])
        root.children = [chain]
        return [root]
    if dataset_name:
        return [Node(str(dataset_name), "Dataset", Health.UNKNOWN, "deleted", "", "", [chain])]
    return [chain]


def version_detail(version: Obj, now: datetime) -> Node:
    spec, status = version.get("spec") or {}, version.get("status") or {}
    node = views.version_node(version, now)
    artifact = spec.get("artifact") or {}
    where = fmt.joined([artifact.get("uri"), f"sha256 {fmt.digest(artifact.get('sha256'))}"])
    node.children.append(Node("artifact", "artifact", Health.NONE, "", "", where))
    gate = views.gate(version)
    checks = Node("gate", "checks", gate.health, gate.text.removeprefix("gate ").split(" ")[0], "",
                  _champion(status.get("champion")))
    for check in status.get("checks") or ():
        ok = check.get("passed")
        checks.children.append(Node(str(check.get("name")), "check", Health.OK if ok else Health.BAD,
                                    "passed" if ok else "failed", "", str(check.get("message") or "")))
    node.children.append(checks)
    if spec.get("reportUri"):
        node.children.append(Node("report", "report", Health.NONE, "", "",
                                  f"{spec['reportUri']} (kubectl loopwright report mv/{name(version)})"))
    for event in (status.get("deployments") or ())[:5]:
        node.children.append(Node(str(event.get("event")), "history", Health.NONE, "",
                                  fmt.age(event.get("time"), now),
                                  fmt.joined([f"Deployment {event.get('deployment')}",
                                              event.get("message")])))
    return node


def _champion(champion: Mapping[str, Any] | None) -> str:
    if not champion:
        return ""
    return (f"compared with champion {champion.get('name')} ({champion.get('metric')} "
            f"{fmt.number(champion.get('value'))})")


def serving_node(deployment: Obj, version: Obj, loop: Loop, now: datetime) -> Node | None:
    """The Deployment serving ``version`` (as stable or canary) with the policies using it as reference."""
    status = deployment.get("status") or {}
    role = next((r for r in ("stable", "canary") if dig(status, r, "modelVersion") == name(version)), None)
    if role is None:
        return None
    part = status[role]
    phase = str(status.get("phase") or "")
    node = Node(name(deployment), "Deployment", views.ROLLOUT.get(phase, Health.UNKNOWN), phase,
                views.created(deployment, now),
                f"serves it as {role}: {part.get('readyReplicas', 0)}/{part.get('replicas', 0)} ready, "
                f"weight {part.get('weight', 0)}%")
    for policy in loop.policies:
        if (dig(policy, "spec", "deploymentRef", "name") == name(deployment)
                and dig(policy, "status", "modelVersion") == name(version)):
            health, word = views.policy_health(policy)
            node.children.append(Node(name(policy), "DriftPolicy", health, word, views.created(policy, now),
                                      "its training profile is the drift reference"))
    return node


# -- drift ------------------------------------------------------------------------------------------

def marks(feature: str, checks: Sequence[Mapping[str, Any]], *, unicode: bool = True) -> str:
    """The feature's verdict in each recent check, oldest first: ✖ drifted, ✔ not, · no verdict."""
    out = []
    for check in reversed(checks[:HISTORY_MARKS]):
        if check.get("drifted") is None:
            out.append("·" if unicode else ".")
        elif feature in (check.get("driftedFeatures") or ()):
            out.append("✖" if unicode else "x")
        else:
            out.append("✔" if unicode else "+")
    return "".join(out) or "-"


def drift_features(policy: Obj, *, unicode: bool = True) -> tuple[list[str], list[list[Cell]]]:
    status = policy.get("status") or {}
    checks = status.get("checks") or []
    features = sorted(status.get("features") or (), key=lambda f: (not f.get("drifted"), -views.severity(f)))
    rows = []
    for f in features:
        health, word = views.feature_health(f)
        rows.append([Cell(str(f.get("name")), health), Cell(str(f.get("method"))),
                     Cell(fmt.number(f.get("statistic"))), Cell(fmt.number(f.get("threshold"))),
                     Cell(word, health), Cell(marks(str(f.get("name")), checks, unicode=unicode))])
    prediction = status.get("prediction")
    if prediction:
        health, word = views.feature_health(prediction)
        rows.append([Cell("(prediction)", health), Cell(str(prediction.get("method"))),
                     Cell(fmt.number(prediction.get("statistic"))),
                     Cell(fmt.number(prediction.get("threshold"))),
                     Cell(word, health), Cell("")])
    return ["FEATURE", "METHOD", "STATISTIC", "THRESHOLD", "VERDICT", "LAST CHECKS"], rows


def drift_checks(policy: Obj, now: datetime) -> tuple[list[str], list[list[Cell]]]:
    rows = []
    for check in dig(policy, "status", "checks") or ():
        drifted = check.get("drifted")
        health = Health.UNKNOWN if drifted is None else Health.BAD if drifted else Health.OK
        word = "InsufficientData" if drifted is None else "Drift" if drifted else "NoDrift"
        rows.append([Cell(fmt.ago(check.get("time"), now)), Cell(str(check.get("modelVersion") or "-")),
                     Cell(fmt.number(check.get("samples"))), Cell(fmt.number(check.get("driftShare"))),
                     Cell(word, health), Cell(", ".join(check.get("driftedFeatures") or ()) or "-"),
                     Cell(str(check.get("reportUri") or "-"))])
    return ["CHECKED", "REFERENCE", "SAMPLES", "SHARE", "VERDICT", "DRIFTED", "REPORT"], rows


def drift_header(policy: Obj, now: datetime) -> list[tuple[str, Cell | str]]:
    spec, status = policy.get("spec") or {}, policy.get("status") or {}
    health, word = views.policy_health(policy)
    lines: list[tuple[str, Cell | str]] = [
        ("DriftPolicy", name(policy)),
        ("Deployment", str(dig(spec, "deploymentRef", "name"))),
        ("Reference", str(status.get("modelVersion") or "-")),
        ("Status", Cell(fmt.joined([word, str((fmt.condition(policy, "DriftDetected") or {}).get("message")
                                              or "")]), health)),
        ("Last check", fmt.joined([fmt.ago(status.get("lastCheckTime"), now),
                                   f"{fmt.number(status.get('samples'))} samples" if status.get("samples")
                                   is not None else None, f"every {spec.get('interval', '5m')} over "
                                   f"{spec.get('window', '1h')}"])),
        ("Drift share", f"{fmt.number(status.get('driftShare'))} (drifts at "
                        f"{fmt.number(spec.get('driftShare', 0.5))}, {status.get('consecutive', 0)}/"
                        f"{spec.get('consecutive', 2)} checks in a row)"),
    ]
    if status.get("reportUri"):
        lines.append(("Report", f"{status['reportUri']} (kubectl loopwright report dp/{name(policy)})"))
    if status.get("lastRetrainTime"):
        lines.append(("Last retrain", fmt.joined([
            f"{status.get('lastRetrainTrigger')} {fmt.ago(status.get('lastRetrainTime'), now)}",
            f"request {status.get('lastRetrainRun')}",
            f"report {status['lastRetrainReportUri']}" if status.get("lastRetrainReportUri") else None])))
    return lines


# -- models -----------------------------------------------------------------------------------------

def model_record(loop: Loop) -> dict[str, Any]:
    """One model in brief, raw values (``get -o json`` without a model)."""
    prod = production(loop)
    deployments = [{"name": name(d), "phase": dig(d, "status", "phase"),
                    "canary": dig(d, "status", "canary", "modelVersion")} for d in loop.deployments]
    drift = [{"name": name(p), "status": views.policy_health(p)[1]} for p in loop.policies]
    runs = [r for p in loop.pipelines for r in dig(p, "status", "runs") or ()]
    last = max(runs, key=lambda r: str(r.get("startTime") or ""), default=None)
    return {"model": loop.model, "versions": len(loop.versions), "production": name(prod) if prod else None,
            "deployments": deployments, "driftPolicies": drift,
            "lastRun": {k: last.get(k) for k in ("name", "phase", "trigger", "startTime")} if last else None}


def models(loops: Sequence[Loop], now: datetime) -> tuple[list[str], list[list[Cell]]]:
    """Every model of the namespace, as `kubectl argo rollouts list rollouts` lists rollouts."""
    rows = []
    for loop in loops:
        record = model_record(loop)
        rollout = loop.deployments[0] if loop.deployments else None
        phase = str(dig(rollout, "status", "phase") or "-") if rollout else "-"
        canary = dig(rollout, "status", "canary") if rollout else None
        policy = loop.policies[0] if loop.policies else None
        drift = views.policy_health(policy) if policy else (Health.NONE, "-")
        last = record["lastRun"]
        rows.append([
            Cell(loop.model), Cell(str(record["versions"])),
            Cell(record["production"] or "-", Health.OK if record["production"] else Health.NONE),
            Cell(fmt.joined([phase, f"canary v{canary['version']} {canary.get('weight', 0)}%"
                             if canary else None]), views.ROLLOUT.get(phase, Health.NONE)),
            Cell(drift[1], drift[0]),
            Cell(fmt.joined([last["name"], last["phase"], fmt.ago(last["startTime"], now)]) if last else "-",
                 views.run_health(last) if last else Health.NONE),
        ])
    return ["MODEL", "VERSIONS", "PRODUCTION", "ROLLOUT", "DRIFT", "LAST RUN"], rows
