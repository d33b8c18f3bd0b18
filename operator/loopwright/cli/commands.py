"""The commands: read the objects with the user's identity, hand them to the pure views, print.

Every command reads all it needs first and fails with one line (not found, RBAC, no cluster)
before printing anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from loopwright.api import names
from loopwright.cli import actions, table, tables, views
from loopwright.cli.errors import CliError
from loopwright.cli.fmt import Obj, dig, name
from loopwright.cli.kubeapi import Api
from loopwright.cli.loop import Loop, Objects, models, production, select
from loopwright.cli.style import Style
from loopwright.reports import html


@dataclass
class Context:
    """What every command gets: the API (connected on first use), where to print, and how."""

    connect: Callable[[], Api]
    style: Style
    out: TextIO = field(default_factory=lambda: sys.stdout)
    output: str | None = None
    """``json`` or ``yaml`` for scripts; None for people."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _api: Api | None = None

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = self.connect()
        return self._api

    def lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.out.write(line + "\n")

    def data(self, value: Any) -> None:
        """``-o json|yaml``: the value as scripts read it."""
        if self.output == "yaml":
            import yaml  # noqa: PLC0415 (only for -o yaml)

            self.out.write(yaml.safe_dump(value, sort_keys=False, allow_unicode=True))
        else:
            self.out.write(json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def clean(obj: Obj) -> dict[str, Any]:
    """An object without the server's bookkeeping (managedFields), for -o json|yaml."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def fetch(api: Api, kinds: Iterable[names.KindName] = names.LOOP) -> dict[names.KindName,
                                                                         list[dict[str, Any]]]:
    """Every object of the kinds in the namespace, listed in parallel (one round trip of latency)."""
    kinds = list(kinds)
    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        lists = list(pool.map(lambda k: api.list(k)[0], kinds))
    return dict(zip(kinds, lists, strict=True))


def model_loop(ctx: Context, model: str, objects: Objects | None = None) -> Loop:
    objects = objects if objects is not None else fetch(ctx.api)
    loop = select(model, objects, namespace=ctx.api.namespace)
    if loop.empty:
        known = models(objects)
        hint = f" (models here: {', '.join(known)})" if known else " (no models here: is this the namespace?)"
        raise CliError(f'no model "{model}" in namespace "{ctx.api.namespace}"{hint}')
    return loop


def render_get(loop: Loop, style: Style, now: datetime) -> list[str]:
    return [*table.fields(views.header(loop, now), style), "", *table.tree(views.tree(loop, now), style)]


def render_models(objects: Objects, style: Style, now: datetime, *, namespace: str) -> list[str]:
    loops = [select(m, objects, namespace=namespace) for m in models(objects)]
    if not loops:
        return [f'no models in namespace "{namespace}"']
    headers, rows = tables.models(loops, now)
    return table.table(headers, rows, style)


def get(ctx: Context, model: str | None, *, watch: bool = False) -> None:
    """One model's loop as a tree; without a model, every model of the namespace in a table."""
    objects = fetch(ctx.api)
    if model is None:
        if ctx.output:
            namespace = ctx.api.namespace
            ctx.data([tables.model_record(select(m, objects, namespace=namespace)) for m in models(objects)])
            return
        draw: Callable[[Objects], list[str]] = lambda objs: render_models(  # noqa: E731
            objs, ctx.style, ctx.clock(), namespace=ctx.api.namespace)
    else:
        loop = model_loop(ctx, model, objects)
        if ctx.output:
            ctx.data({"model": loop.model, "namespace": loop.namespace,
                      **{k: [clean(o) for o in v] for k, v in loop.objects().items()}})
            return
        draw = lambda objs: render_get(model_loop(ctx, model, objs), ctx.style, ctx.clock())  # noqa: E731
    if watch:
        from loopwright.cli.watch import follow  # noqa: PLC0415 (threads only for --watch)

        follow(ctx, draw)
        return
    ctx.lines(draw(objects))


def versions(ctx: Context, model: str) -> None:
    loop = model_loop(ctx, model)
    if ctx.output:
        ctx.data([tables.version_record(v, loop) for v in loop.versions])
        return
    if not loop.versions:
        ctx.lines([f"model {model} has no versions yet"])
        return
    headers, rows = tables.versions(loop, ctx.clock())
    ctx.lines(table.table(headers, rows, ctx.style))


def lineage(ctx: Context, version: str) -> None:
    mv = ctx.api.get(names.MODEL_VERSION, version)
    loop = select(str(dig(mv, "spec", "model")), fetch(ctx.api), namespace=ctx.api.namespace)
    if ctx.output:
        ctx.data({"modelVersion": clean(mv), **{k: [clean(o) for o in v] for k, v in loop.objects().items()}})
        return
    ctx.lines(table.tree(tables.lineage(mv, loop, ctx.clock()), ctx.style))


def drift(ctx: Context, policy: str) -> None:
    obj = ctx.api.get(names.DRIFT_POLICY, policy)
    if ctx.output:
        ctx.data(clean(obj))
        return
    now = ctx.clock()
    out = table.fields(tables.drift_header(obj, now), ctx.style)
    headers, rows = tables.drift_features(obj, unicode=ctx.style.unicode)
    out += ["", *(table.table(headers, rows, ctx.style) if rows else ["no check has run yet"])]
    headers, rows = tables.drift_checks(obj, now)
    if rows:
        out += ["", *table.table(headers, rows, ctx.style)]
    ctx.lines(out)


def act(ctx: Context, action: actions.Action, obj: Obj) -> None:
    """Write an action's patch and say what was written (and how to write the same by hand)."""
    ctx.api.patch(action.kind, action.name, action.patch)
    if ctx.output:
        ctx.data({"kind": action.kind.kind, "name": action.name, "namespace": ctx.api.namespace,
                  "patch": action.patch})
        return
    lines = [f"{action.kind.singular}.{names.GROUP}/{action.name} patched: {action.summary}"]
    lines += [f"  wrote {field}" for field in action.fields()]
    lines += [f"  note: {note}" for note in action.notes]
    tool = actions.gitops_manager(obj)
    if tool:
        lines.append(f"  note: {action.name} is managed by {tool}: commit the same field to Git, or a sync "
                     "may revert it")
    lines.append(f"  same as: {action.kubectl(ctx.api.namespace)}")
    ctx.lines(lines)


def rollout(ctx: Context, verb: str, deployment: str, *, version: int | None = None) -> None:
    obj = ctx.api.get(names.DEPLOYMENT, deployment)
    if verb == "promote":
        action = actions.promote(obj, version=version)
    elif verb == "abort":
        action = actions.abort(obj, version=version)
    else:
        action = actions.pause(obj, paused=verb == "pause")
    act(ctx, action, obj)


def train(ctx: Context, pipeline: str) -> None:
    obj = ctx.api.get(names.TRAINING_PIPELINE, pipeline)
    act(ctx, actions.train(obj, now=ctx.clock()), obj)


def retrain(ctx: Context, model: str) -> None:
    loop = model_loop(ctx, model, fetch(ctx.api, (names.TRAINING_PIPELINE, names.MODEL_VERSION,
                                                  names.DEPLOYMENT)))
    pipeline, why = actions.retrain_target(loop.pipelines, production(loop), model=model)
    act(ctx, actions.train(pipeline, now=ctx.clock(), reason=why), pipeline)


def logs(ctx: Context, run: str, *, follow: bool = False, tail: int | None = None) -> None:
    """The trainer's log of a run (its Job's newest pod); a pipeline name means its latest run."""
    job_name = _run_job(ctx, run)
    pods = ctx.api.core("pods", query={"labelSelector": f"job-name={job_name}"}).get("items") or []
    if not pods:
        raise CliError(f"run {job_name} has no pod (yet, or any more): kubectl -n {ctx.api.namespace} "
                       f"describe job {job_name}")
    pod = max(pods, key=lambda p: str(dig(p, "metadata", "creationTimestamp") or ""))
    phase = dig(pod, "status", "phase")
    waiting = next((dig(s, "state", "waiting") for s in dig(pod, "status", "containerStatuses") or ()
                    if dig(s, "state", "waiting")), None)
    if phase == "Pending" and not follow:
        why = f" ({waiting.get('reason')})" if waiting else ""
        raise CliError(f"pod {name(pod)} of run {job_name} is Pending{why}: no logs yet (use -f to wait)")
    if len(pods) > 1:
        sys.stderr.write(f"run {job_name} has {len(pods)} pods (retries); showing the newest, {name(pod)}\n")
    query = {"follow": follow, "tailLines": tail}
    for line in ctx.api.core("pods", name(pod), sub="log", query=query):
        ctx.out.write(line.decode(errors="replace"))
        ctx.out.flush()


def _run_job(ctx: Context, run: str) -> str:
    try:
        ctx.api.core("jobs", run)
        return run
    except CliError as exc:
        if not getattr(exc, "not_found", False):
            raise
    pipelines = ctx.api.list(names.TRAINING_PIPELINE)[0]
    by_name = {name(p): p for p in pipelines}
    if run in by_name:
        last = dig(by_name[run], "status", "lastRun")
        if not last:
            raise CliError(f"TrainingPipeline {run} has no run yet (start one: kubectl loopwright train "
                           f"{run})")
        return str(last)
    known = [str(r.get("name")) for p in pipelines for r in dig(p, "status", "runs") or ()]
    if run in known:
        raise CliError(f"the Job of run {run} is gone (runs beyond historyLimit are deleted)")
    hint = f" (recent runs: {', '.join(known[:8])})" if known else ""
    raise CliError(f'no training run or TrainingPipeline "{run}" in namespace "{ctx.api.namespace}"{hint}')



def report(ctx: Context, target: str, *, retrain: bool, open_it: bool, file: str | None,
           as_json: bool) -> None:
    from loopwright.cli import report as reports  # noqa: PLC0415 (S3 only here)

    word, object_name = reports.parse_target(target)
    if word == reports.RUN:
        owner = next((p for p in ctx.api.list(names.TRAINING_PIPELINE)[0]
                      if any(r.get("name") == object_name for r in dig(p, "status", "runs") or ())), None)
        if owner is None:
            raise CliError(f'no TrainingPipeline in namespace "{ctx.api.namespace}" has a run '
                           f'"{object_name}"')
        uri, what = reports.uri_of(word, owner, retrain=retrain, run=object_name)
    else:
        kind = reports.kind_named(word)
        assert kind is not None
        uri, what = reports.uri_of(word, ctx.api.get(kind, object_name), retrain=retrain)
    uri = html.json_twin(uri) if as_json else uri
    data = reports.fetch(uri)
    if file == "-":
        sys.stdout.buffer.write(data)
        return
    path = reports.save(data, uri=uri, file=file, open_it=open_it)
    if ctx.output:
        ctx.data({"uri": uri, "file": str(path), "what": what})
        return
    ctx.lines([f"{'opened' if open_it else 'saved'} the {what}: {path}", f"  from {uri}"])
