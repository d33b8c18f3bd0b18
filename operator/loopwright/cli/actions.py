"""What ``promote``, ``abort``, ``pause``, ``resume``, ``train`` and ``retrain`` write (pure).

Each action is a JSON merge patch of fields a GitOps user could keep in Git: the
version-scoped ``spec.rollout.promote`` / ``spec.rollout.abort`` (which do nothing once that
version is no longer the canary), ``spec.rollout.paused``, and the train-request annotation.
The plugin never writes status and never touches a workload directly: the operator acts on
these fields exactly as it would on a ``kubectl apply``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopwright.api import names
from loopwright.cli.errors import CliError
from loopwright.cli.fmt import Obj, dig, name

GITOPS_MARKERS = {
    "argocd.argoproj.io/tracking-id": "Argo CD",
    "argocd.argoproj.io/instance": "Argo CD",
    "kustomize.toolkit.fluxcd.io/name": "Flux",
    "helm.toolkit.fluxcd.io/name": "Flux",
}


@dataclass(frozen=True)
class Action:
    """A patch of one object and the words that say what it does."""

    kind: names.KindName
    name: str
    patch: dict[str, Any]
    summary: str
    notes: tuple[str, ...] = ()

    def fields(self) -> list[str]:
        """``spec.rollout.promote = {"version": 3}``: each leaf the patch writes."""
        return [f"{path} = {json.dumps(value)}" for path, value in _leaves(self.patch)]

    def kubectl(self, namespace: str) -> str:
        """The same write as a kubectl command, for people and for Git."""
        short = self.kind.short_names[-1]
        return (f"kubectl -n {shlex.quote(namespace)} patch {short} {shlex.quote(self.name)} --type merge "
                f"-p {shlex.quote(json.dumps(self.patch, separators=(',', ':')))}")


def _leaves(patch: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in patch.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value and key not in ("promote", "abort"):
            out += _leaves(value, path)
        else:
            out.append((f"{prefix}[{json.dumps(key)}]" if "/" in key else path, value))
    return out


def gitops_manager(obj: Obj) -> str | None:
    """Argo CD or Flux, when the object carries their tracking label or annotation."""
    meta = obj.get("metadata") or {}
    marks = {**(meta.get("labels") or {}), **(meta.get("annotations") or {})}
    return next((tool for key, tool in GITOPS_MARKERS.items() if key in marks), None)


def _canary_version(deployment: Obj, version: int | None, verb: str) -> int:
    if version is not None:
        return version
    canary = dig(deployment, "status", "canary", "version")
    if canary is None:
        stable = dig(deployment, "status", "stable", "modelVersion") or "nothing"
        raise CliError(f"Deployment {name(deployment)} has no canary to {verb} (stable: {stable}, phase "
                       f"{dig(deployment, 'status', 'phase') or 'Pending'}); name one with --version")
    return int(canary)


def _scoped(deployment: Obj, verb: str, version: int | None, effect: str) -> Action:
    """``spec.rollout.<verb>.version``; the other of promote/abort is cleared if it names the same
    version (the API refuses both on one version)."""
    number = _canary_version(deployment, version, verb)
    other = "abort" if verb == "promote" else "promote"
    rollout: dict[str, Any] = {verb: {"version": number}}
    notes = []
    if dig(deployment, "spec", "rollout", other, "version") == number:
        rollout[other] = None
        notes.append(f"cleared spec.rollout.{other}, which named the same version {number}")
    return Action(names.DEPLOYMENT, name(deployment), {"spec": {"rollout": rollout}},
                  f"{verb} version {number} of Deployment {name(deployment)}: {effect}", tuple(notes))


def promote(deployment: Obj, *, version: int | None = None) -> Action:
    return _scoped(deployment, "promote", version, "the remaining steps are skipped")


def abort(deployment: Obj, *, version: int | None = None) -> Action:
    return _scoped(deployment, "abort", version, "it is rolled back and not retried by `latest`")


def pause(deployment: Obj, *, paused: bool) -> Action:
    notes: list[str] = []
    status, spec = deployment.get("status") or {}, deployment.get("spec") or {}
    canary = status.get("canary") or {}
    if paused and not canary:
        notes.append("no canary is rolling out now: the next one will hold at its first step")
    steps = dig(spec, "rollout", "steps") or []
    step = int(canary.get("step") or 0)
    if not paused and canary and step < len(steps) and not steps[step].get("pause"):
        notes.append(f"step {step + 1} has no pause: it holds until promoted "
                     f"(kubectl loopwright promote {name(deployment)})")
    word = "pause" if paused else "resume"
    return Action(names.DEPLOYMENT, name(deployment), {"spec": {"rollout": {"paused": paused}}},
                  f"{word} the rollout of Deployment {name(deployment)}"
                  + (" (the analysis keeps running and can still roll back)" if paused else ""), tuple(notes))


def request_token(now: datetime) -> str:
    """A new train-request value: any new value is one run."""
    return "kubectl-" + now.strftime("%Y%m%dT%H%M%SZ")


def train(pipeline: Obj, *, now: datetime, reason: str = "") -> Action:
    token = request_token(now)
    notes = []
    if dig(pipeline, "spec", "triggers", "suspend"):
        notes.append("the pipeline is suspended (spec.triggers.suspend): the request waits until it is "
                     "resumed")
    runs = dig(pipeline, "status", "runs") or ()
    active = next((r for r in runs if r.get("phase") in ("Pending", "Running")), None)
    if active is not None:
        notes.append(f"run {active.get('name')} is in progress: this run starts after it")
    patch = {"metadata": {"annotations": {names.TRAIN_REQUEST_ANNOTATION: token,
                                          names.TRAIN_TRIGGER_ANNOTATION: "Manual"}}}
    return Action(names.TRAINING_PIPELINE, name(pipeline), patch,
                  f"request one run of TrainingPipeline {name(pipeline)}{reason} (trigger Manual)",
                  tuple(notes))


def retrain_target(pipelines: list[Obj], production: Obj | None, *, model: str) -> tuple[Obj, str]:
    """The pipeline retraining ``model``: the one that trained its production version, else its only one."""
    producer = dig(production, "spec", "lineage", "pipeline", "name") if production else None
    chosen = next((p for p in pipelines if name(p) == producer), None)
    if chosen is not None:
        return chosen, f", which trained {name(production or {})} in production"
    if len(pipelines) == 1:
        return pipelines[0], f", the pipeline of model {model}"
    if not pipelines:
        raise CliError(f"no TrainingPipeline trains model {model!r}")
    raise CliError(f"model {model!r} has {len(pipelines)} pipelines ({', '.join(map(name, pipelines))}) and "
                   "none trained a production version: use kubectl loopwright train <pipeline>")
