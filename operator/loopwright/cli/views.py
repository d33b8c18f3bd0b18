"""``kubectl loopwright get <model>``: the loop as one tree, as ``kubectl argo rollouts get`` draws a
rollout (pure: a Loop and the time in, nodes and header lines out).

Model ─ Dataset ─ TrainingPipeline ─ data version ─ run ─ ModelVersion, then each Deployment
(stable, canary, last analysis) with the DriftPolicies watching it (statistic per feature).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from loopwright.api.names import parse_duration
from loopwright.cli import fmt
from loopwright.cli.fmt import Obj, dig, name
from loopwright.cli.loop import Loop, production
from loopwright.cli.style import Health
from loopwright.cli.table import Cell, Node

FEATURE_ROWS = 10
"""Features shown under a DriftPolicy in the tree (drifted and worst first); `drift` shows all."""

_RUN = {"Succeeded": Health.OK, "Failed": Health.BAD, "Running": Health.PROGRESS, "Pending": Health.PENDING,
        "Skipped": Health.WARN}
_VERSION = {"Validated": Health.OK, "Rejected": Health.BAD, "Failed": Health.BAD, "Pending": Health.PENDING}
ROLLOUT = {"Stable": Health.OK, "Progressing": Health.PROGRESS, "Promoting": Health.PROGRESS,
            "Paused": Health.PAUSED, "RolledBack": Health.WARN, "Failed": Health.BAD,
            "Pending": Health.PENDING}
_VERDICT = {"Pass": Health.OK, "Fail": Health.BAD, "Inconclusive": Health.WARN}


def ready(obj: Obj) -> tuple[Health, str]:
    """Health and word of an object from its Ready condition (kstatus)."""
    cond = fmt.condition(obj, "Ready")
    if cond is None:
        return Health.PENDING, "Pending"
    if cond.get("status") == "True":
        return Health.OK, str(cond.get("reason") or "Ready")
    return (Health.BAD if cond.get("status") == "False" else Health.UNKNOWN), str(cond.get("reason") or "")


def created(obj: Obj | None, now: datetime) -> str:
    return fmt.age(dig(obj, "metadata", "creationTimestamp"), now)


def dataset_node(ds: Obj, now: datetime) -> Node:
    status = ds.get("status") or {}
    health, word = ready(ds)
    if health == Health.OK and status.get("validatedVersion"):
        word = "Validated"
    anomalies = len(status.get("anomalies") or ())
    info = fmt.joined([f"version {fmt.digest(status.get('version'))}" if status.get("version") else None,
                       f"{fmt.number(status.get('rows'))} rows" if status.get("rows") is not None else None,
                       f"{anomalies} anomalies" if anomalies else None,
                       None if health == Health.OK else str((fmt.condition(ds, "Ready") or {}).get("message")
                                                            or "")])
    return Node(name(ds), "Dataset", health, word, created(ds, now), info)


def run_health(run: Mapping[str, Any]) -> Health:
    return _RUN.get(str(run.get("phase")), Health.UNKNOWN)


def run_node(run: Mapping[str, Any], now: datetime) -> Node:
    start, end = fmt.parse_time(run.get("startTime")), fmt.parse_time(run.get("completionTime"))
    took = fmt.duration(((end or now) - start).total_seconds()) if start else None
    failed = run.get("phase") in ("Failed", "Skipped")
    info = fmt.joined([f"trigger {run.get('trigger')}",
                       f"took {took}" if end else f"for {took}" if took else None,
                       f"{run.get('reason')}: {run.get('message')}" if failed else None])
    return Node(str(run.get("name")), "Run", run_health(run), str(run.get("phase") or ""),
                fmt.age(run.get("startTime"), now), info)


def gate(version: Obj) -> Cell:
    """``gate 3/3`` when every check passed, else the first failing check."""
    checks = dig(version, "status", "checks") or []
    if not checks:
        return Cell("gate pending", Health.PENDING)
    failed = [c for c in checks if not c.get("passed")]
    if failed:
        return Cell(f"gate ✖ {failed[0].get('name')}: {failed[0].get('message')}", Health.BAD)
    return Cell(f"gate {len(checks)}/{len(checks)} ✔", Health.OK)


def aliases(version: Obj) -> str | None:
    found = dig(version, "status", "aliases") or []
    return "[" + ", ".join(found) + "]" if found else None


def version_health(phase: str) -> Health:
    return _VERSION.get(phase, Health.UNKNOWN)


def version_node(version: Obj, now: datetime) -> Node:
    spec, status = version.get("spec") or {}, version.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    primary = dig(spec, "primaryMetric", "name")
    info = fmt.joined([f"v{spec.get('version')}",
                       fmt.metrics(spec.get("metrics"), primary=primary) if spec.get("metrics") else None,
                       gate(version).text, aliases(version)])
    return Node(name(version), "ModelVersion", version_health(phase), phase,
                created(version, now), info)


def pipeline_node(pipeline: Obj, loop: Loop, datasets: Mapping[str, Obj], now: datetime,
                  placed: set[str]) -> Node:
    spec, status = pipeline.get("spec") or {}, pipeline.get("status") or {}
    runs = status.get("runs") or []
    health, word = ready(pipeline)
    active = next((r for r in runs if r.get("phase") in ("Pending", "Running")), None)
    if active is not None:
        health, word = Health.PROGRESS, "Training"
    triggers = spec.get("triggers") or {}
    info = fmt.joined([
        dig(spec, "model", "estimator"), f"{status.get('runCount', 0)} runs",
        "suspended" if triggers.get("suspend") else None,
        f"schedule {triggers['schedule']}" if triggers.get("schedule") else None,
        f"next {fmt.age(now.isoformat(), fmt.parse_time(status['nextScheduledTime']) or now)}"
        if status.get("nextScheduledTime") else None,
        None if health in (Health.OK, Health.PROGRESS) else str((fmt.condition(pipeline, "Ready") or {})
                                                               .get("message") or ""),
    ])
    node = Node(name(pipeline), "TrainingPipeline", health, word,
                created(pipeline, now), info)
    by_run = {dig(v, "spec", "lineage", "pipeline", "run"): v for v in loop.versions
              if dig(v, "spec", "lineage", "pipeline", "name") == name(pipeline)}
    groups: dict[str, Node] = {}
    dataset = datasets.get(str(dig(spec, "datasetRef", "name")))

    def group(digest: str | None) -> Node:
        key = digest or "unknown"
        if key not in groups:
            groups[key] = data_version_node(dataset, digest, now)
        return groups[key]

    requester = retrain_requester(pipeline, loop.policies)
    for run in runs:
        run_node_ = run_node(run, now)
        if requester is not None and run.get("trigger") in ("Drift", "Performance"):
            by = name(requester)
            run_node_.info = fmt.joined([run_node_.info, f"requested by DriftPolicy {by} "
                                         f"(report: kubectl loopwright report dp/{by} --retrain)"])
            requester = None  # only the newest such run is the one it requested
        version = by_run.get(run.get("name"))
        if version is not None:
            run_node_.children.append(version_node(version, now))
            placed.add(name(version))
        group(run.get("datasetVersion")).children.append(run_node_)
    for version in loop.versions:  # versions whose run left the pipeline's history
        if name(version) not in placed and version in by_run.values():
            digest = dig(version, "spec", "lineage", "dataset", "version")
            group(digest).children.append(version_node(version, now))
            placed.add(name(version))
    node.children = list(groups.values())
    return node


def retrain_requester(pipeline: Obj, policies: list[Obj]) -> Obj | None:
    """The DriftPolicy whose retrain request the pipeline handled last, if one did."""
    handled = dig(pipeline, "status", "handledTrainRequest")
    return next((p for p in policies
                 if dig(p, "spec", "actions", "retrain", "pipelineRef", "name") == name(pipeline)
                 and handled and dig(p, "status", "lastRetrainRun") == handled), None)


def data_version_node(dataset: Obj | None, digest: str | None, now: datetime) -> Node:
    status = (dataset or {}).get("status") or {}
    record = next((h for h in status.get("history") or () if h.get("version") == digest), None)
    current = digest is not None and digest == status.get("validatedVersion")
    rows = record.get("rows") if record else status.get("rows") if current else None
    info = fmt.joined([f"{fmt.number(rows)} rows" if rows is not None else None,
                       "current" if current else None])
    health = Health.OK if current or (record and record.get("validated")) else Health.NONE
    return Node(fmt.digest(digest), "data", health, "Validated" if health == Health.OK else "",
                fmt.age(record.get("observedTime"), now) if record else "", info)


def deployment_node(deployment: Obj, policies: list[Obj], now: datetime) -> Node:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    stable, canary = status.get("stable") or {}, status.get("canary") or {}
    steps = dig(spec, "rollout", "steps") or []
    history = status.get("history") or []
    info = fmt.joined([
        f"stable v{stable['version']}" if stable.get("version") else "nothing served",
        f"canary v{canary['version']} step {canary.get('step', 0) + 1}/{len(steps)} weight "
        f"{canary.get('weight', 0)}%" if canary.get("version") else None,
        "paused" if dig(spec, "rollout", "paused") else None,
        f"last v{history[0].get('version')} {history[0].get('event')} {fmt.ago(history[0].get('time'), now)}"
        if history and not canary else None,
        None if phase != "Failed" else str((fmt.condition(deployment, "Ready") or {}).get("message") or ""),
    ])
    node = Node(name(deployment), "Deployment", ROLLOUT.get(phase, Health.UNKNOWN), phase,
                created(deployment, now), info)
    if stable.get("version"):
        up, want = stable.get("readyReplicas", 0), stable.get("replicas", 0)
        node.children.append(Node(str(stable.get("modelVersion")), "stable",
                                  Health.OK if up >= want else Health.PROGRESS, f"{up}/{want} ready", "",
                                  f"weight {stable.get('weight', 0)}%"))
    if canary.get("version"):
        node.children.append(canary_node(canary, steps, now))
    if status.get("analysis") and canary.get("version"):
        node.children.append(analysis_node(status["analysis"], spec, now))
    node.children += [policy_node(p, now) for p in policies]
    return node


def canary_node(canary: Mapping[str, Any], steps: list[Mapping[str, Any]], now: datetime) -> Node:
    step = int(canary.get("step") or 0)
    pause = steps[step].get("pause") if step < len(steps) else None
    reached = fmt.parse_time(canary.get("weightReachedTime"))
    hold = "holds until promoted" if step < len(steps) and not pause else None
    if pause and reached:
        left = (reached + parse_duration(pause) - now).total_seconds()
        hold = f"pause {pause}, {fmt.duration(left)} left" if left > 0 else f"pause {pause} over"
    ready_pods = f"{canary.get('readyReplicas', 0)}/{canary.get('replicas', 0)} ready"
    return Node(str(canary.get("modelVersion")), "canary", Health.PROGRESS, ready_pods,
                fmt.age(canary.get("stepStartTime"), now),
                fmt.joined([f"step {step + 1}/{len(steps)}", f"weight {canary.get('weight', 0)}% of "
                            f"{canary.get('desiredWeight', 0)}%", hold]))


def analysis_node(analysis: Mapping[str, Any], spec: Mapping[str, Any], now: datetime) -> Node:
    verdict = analysis.get("verdict")
    limit = dig(spec, "rollout", "analysis", "failureLimit")
    node = Node("analysis", "Analysis", _VERDICT.get(str(verdict), Health.PENDING), str(verdict or "Waiting"),
                fmt.age(analysis.get("lastTime"), now),
                fmt.joined([f"{analysis.get('checks', 0)} checks at this step",
                            f"{analysis.get('failures', 0)}/{limit} failures" if limit is not None
                            else None]))
    for result in analysis.get("results") or ():
        node.children.append(Node(str(result.get("metric")), "metric",
                                  _VERDICT.get(str(result.get("verdict")), Health.UNKNOWN),
                                  str(result.get("verdict") or ""), "", str(result.get("message") or "")))
    return node


def statistic(result: Mapping[str, Any]) -> str:
    """``psi 0.3121 > 0.2`` or, for chi-squared, ``chiSquared p 0.003 < 0.05``."""
    method, value, threshold = result.get("method"), result.get("statistic"), result.get("threshold")
    if value is None:
        return f"{method} no data (threshold {fmt.number(threshold)})"
    if method == "chiSquared":
        sign = "<" if result.get("drifted") else "≥"
        return f"{method} p {fmt.number(value)} {sign} {fmt.number(threshold)}"
    sign = ">" if result.get("drifted") else "≤"
    return f"{method} {fmt.number(value)} {sign} {fmt.number(threshold)}"


def feature_health(result: Mapping[str, Any]) -> tuple[Health, str]:
    if result.get("statistic") is None:
        return Health.UNKNOWN, "no data"
    return (Health.BAD, "drifted") if result.get("drifted") else (Health.OK, "ok")


def severity(result: Mapping[str, Any]) -> float:
    """How far a feature is towards its threshold (chi-squared p-values turned around), for ordering."""
    value, threshold = result.get("statistic"), result.get("threshold") or 1.0
    if value is None:
        return -1.0
    if result.get("method") == "chiSquared":
        return float(threshold) / max(float(value), 1e-300)
    return float(value) / float(threshold)


def policy_health(policy: Obj) -> tuple[Health, str]:
    for type_, word in (("DriftDetected", "Drift"), ("PerformanceDegraded", "Degraded")):
        if (fmt.condition(policy, type_) or {}).get("status") == "True":
            return Health.BAD, word
    health, word = ready(policy)
    if health != Health.OK:
        return health, word
    if (fmt.condition(policy, "InsufficientData") or {}).get("status") == "True":
        return Health.WARN, "InsufficientData"
    if (fmt.condition(policy, "DriftDetected") or {}).get("reason") == "DriftSuspected":
        return Health.WARN, "Suspected"
    return Health.OK, "NoDrift"


def policy_node(policy: Obj, now: datetime, *, limit: int | None = FEATURE_ROWS) -> Node:
    spec, status = policy.get("spec") or {}, policy.get("status") or {}
    health, word = policy_health(policy)
    share = status.get("driftShare")
    info = fmt.joined([
        f"share {fmt.number(share)} of {fmt.number(spec.get('driftShare', 0.5))}" if share is not None
        else None,
        f"{status.get('consecutive', 0)}/{spec.get('consecutive', 2)} checks",
        f"{fmt.number(status.get('samples'))} samples" if status.get("samples") is not None else None,
        f"checked {fmt.ago(status.get('lastCheckTime'), now)}",
        f"retrain {status['lastRetrainTrigger']} {fmt.ago(status.get('lastRetrainTime'), now)}"
        if status.get("lastRetrainTrigger") else None,
        None if health != Health.BAD or word not in ("", "InvalidSpec", "NotServing") else
        str((fmt.condition(policy, "Ready") or {}).get("message") or ""),
    ])
    node = Node(name(policy), "DriftPolicy", health, word,
                created(policy, now), info)
    features = sorted(status.get("features") or (), key=lambda f: (not f.get("drifted"), -severity(f)))
    shown = features if limit is None else features[:limit]
    for result in shown:
        f_health, f_word = feature_health(result)
        node.children.append(Node(str(result.get("name")), "feature", f_health, f_word, "",
                                  statistic(result)))
    if len(shown) < len(features):
        node.children.append(Node(f"{len(features) - len(shown)} more", "", Health.NONE, "", "",
                                  f"kubectl loopwright drift {name(policy)}"))
    prediction = status.get("prediction")
    if prediction:
        p_health, p_word = feature_health(prediction)
        node.children.append(Node("prediction", "prediction", p_health, p_word, "", statistic(prediction)))
    performance = status.get("performance")
    if performance:
        node.children.append(performance_node(performance, spec))
    return node


def performance_node(perf: Mapping[str, Any], spec: Mapping[str, Any]) -> Node:
    metric = perf.get("metric")
    if perf.get("value") is None:
        return Node(str(metric), "performance", Health.UNKNOWN, "no data", "",
                    f"{perf.get('labels', 0)} labels, needs {dig(spec, 'performance', 'minLabels')}")
    health = Health.BAD if perf.get("degraded") else Health.OK
    return Node(str(metric), "performance", health, "degraded" if perf.get("degraded") else "ok", "",
                f"live {fmt.number(perf.get('value'))} vs {fmt.number(perf.get('reference'))} at training, "
                f"max drop {fmt.number(dig(spec, 'performance', 'maxDrop'))}, {perf.get('labels', 0)} labels")


def tree(loop: Loop, now: datetime) -> list[Node]:
    datasets = {name(d): d for d in loop.datasets}
    placed: set[str] = set()
    prod = production(loop)
    root = Node(loop.model, "Model", Health.NONE, "", "",
                fmt.joined([f"{len(loop.versions)} versions", f"production {name(prod)}" if prod else
                            "nothing in production"]))
    for dataset in loop.datasets:
        ds_node = dataset_node(dataset, now)
        ds_node.children = [pipeline_node(p, loop, datasets, now, placed) for p in loop.pipelines
                            if dig(p, "spec", "datasetRef", "name") == name(dataset)]
        root.children.append(ds_node)
    for pipeline in loop.pipelines:  # a pipeline whose Dataset does not exist
        if dig(pipeline, "spec", "datasetRef", "name") not in datasets:
            root.children.append(pipeline_node(pipeline, loop, datasets, now, placed))
    root.children += [version_node(v, now) for v in loop.versions if name(v) not in placed]
    for deployment in loop.deployments:
        watching = [p for p in loop.policies if dig(p, "spec", "deploymentRef", "name") == name(deployment)]
        root.children.append(deployment_node(deployment, watching, now))
    return [root]


def header(loop: Loop, now: datetime) -> list[tuple[str, Cell | str]]:
    """The summary above the tree: what serves, what rolls out, drift, the latest run."""
    lines: list[tuple[str, Cell | str]] = [("Model", loop.model), ("Namespace", loop.namespace)]
    prod = production(loop)
    if prod is not None:
        primary = dig(prod, "spec", "primaryMetric") or {}
        metric = f"{primary.get('name')} {fmt.number(primary.get('value'))}" if primary else None
        lines.append(("Production", Cell(fmt.joined([name(prod), metric]), Health.OK)))
    for deployment in loop.deployments:
        status = deployment.get("status") or {}
        phase = str(status.get("phase") or "Pending")
        canary = status.get("canary") or {}
        text = fmt.joined([phase, f"canary {canary.get('modelVersion')} at {canary.get('weight', 0)}%"
                           if canary else None,
                           f"analysis {dig(status, 'analysis', 'verdict')}" if canary and dig(
                               status, "analysis", "verdict") else None])
        lines.append((f"Rollout {name(deployment)}", Cell(text, ROLLOUT.get(phase, Health.UNKNOWN))))
    for policy in loop.policies:
        health, word = policy_health(policy)
        drifted = [f.get("name") for f in dig(policy, "status", "features") or () if f.get("drifted")]
        which = "drifted: " + ", ".join(map(str, drifted)) if drifted else None
        lines.append((f"Drift {name(policy)}", Cell(fmt.joined([word, which]), health)))
    latest = max((run for p in loop.pipelines for run in dig(p, "status", "runs") or ()),
                 key=lambda r: str(r.get("startTime") or ""), default=None)
    if latest is not None:
        text = fmt.joined([str(latest.get("name")), str(latest.get("phase")),
                           f"trigger {latest.get('trigger')}", fmt.ago(latest.get("startTime"), now)])
        lines.append(("Last run", Cell(text, run_health(latest))))
    return lines
