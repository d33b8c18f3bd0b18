"""Manifests of the Jobs the operator starts: profiling a Dataset, training a run, verifying an artifact.

Every Job runs under the restricted Pod Security Standard (non-root user 65532, no privilege
escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem with an emptyDir
on /tmp), so the operator works in namespaces that enforce ``restricted``.

Credentials reach the pod only through ``secretKeyRef``: a Job runs in the namespace of the
resource that asked for it and a Pod can only reference Secrets of its own namespace, so that
namespace needs the credentials Secret (same name as the operator's ``LOOPWRIGHT_S3_SECRET``, keys
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``), or the Dataset names its own Secret with
``spec.source.credentialsSecretRef``.

Commands are the package's console scripts (``loopwright-trainer`` ...) rather than
``python -m``: a script's shebang names its interpreter by absolute path, which works for any
user whatever the image's PATH layout.

Exit codes 2 (bad parameters) and 3 (bad data) fail the Job at once through a
``podFailurePolicy``: retrying cannot fix them, so ``backoffLimit`` is spent only on failures
that a retry may cure (a lost node, a storage hiccup).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from loopwright.api.common import ResourceRequirements
from loopwright.api.dataset import DatasetSpec
from loopwright.api.modelversion import CompiledArtifact
from loopwright.api.names import child_name
from loopwright.api.pipeline import TrainingPipelineSpec
from loopwright.api.podtemplate import PodTemplate
from loopwright.api.schema import DatasetSchema
from loopwright.api.search import SearchResult
from loopwright.core.training import search as search_plan
from loopwright.jobs import contract as _job
from loopwright.operator.builders.common import (
    ACCESS_KEY,
    SECRET_KEY,
    Manifest,
    Owner,
    owner_reference,
    restricted_container_security,
    restricted_pod_security,
    scratch_mount,
    scratch_volume,
)
from loopwright.operator.builders.pods import Role, apply
from loopwright.operator.config import Config

PROFILE_BACKOFF_LIMIT = 2
PROFILE_DEADLINE_SECONDS = 1800
VERIFY_BACKOFF_LIMIT = 2
VERIFY_DEADLINE_SECONDS = 600
FINISHED_TTL_SECONDS = 3600
"""Profiling and verification Jobs are read once, then only clutter the namespace."""

@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """What every Job of this operator shares, from the operator's configuration."""

    image: str
    s3_endpoint: str | None
    credentials_secret: str | None
    """Name of the Secret, in the Job's namespace, holding the S3 credentials; None: no credentials."""
    suspend: bool = False
    """Create Jobs suspended (no pod runs): for scale benchmarks of the control plane only."""
    pod_defaults: PodTemplate | None = None
    """The operator-wide pod template overlay."""
    default_resources: Mapping[Role, ResourceRequirements] = field(default_factory=dict)
    """Operator-wide requests and limits per role, over the built-in ones."""

    @classmethod
    def of(cls, cfg: Config, *, training: bool = False) -> JobSettings:
        """From the operator's configuration; only training Jobs honour LOOPWRIGHT_SUSPEND_JOBS."""
        return cls(image=cfg.trainer_image, s3_endpoint=cfg.s3_endpoint,
                   credentials_secret=cfg.s3_secret.name if cfg.s3_secret else None,
                   suspend=training and cfg.suspend_jobs, pod_defaults=cfg.pod_defaults,
                   default_resources=cfg.default_resources)


def profiling_job(
    *,
    namespace: str,
    name: str,
    owner: Owner,
    spec: DatasetSpec,
    output_prefix: str,
    labels: Mapping[str, str],
    settings: JobSettings,
) -> Manifest:
    """The Job that profiles one version of a Dataset (``loopwright-profiler``)."""
    args = [
        "--source-uri", spec.source.uri,
        "--format", str(spec.source.format),
        "--schema-json", _compact(spec.schema_.to_wire()),
        "--validation-json", _compact(spec.validation.to_wire()),
        "--output-prefix", output_prefix,
    ]
    secret = spec.source.credentials_secret_ref.name if spec.source.credentials_secret_ref else None
    return _job_manifest(
        namespace=namespace, name=name, owner=owner, labels=labels,
        command=["loopwright-profiler", *args],
        settings=settings, secret=secret or settings.credentials_secret,
        backoff_limit=PROFILE_BACKOFF_LIMIT, deadline=PROFILE_DEADLINE_SECONDS,
        ttl=FINISHED_TTL_SECONDS, role=Role.PROFILER, resources=None, overlay=spec.pod_template)


@dataclass(frozen=True, kw_only=True)
class RunInputs:
    """What both Jobs of a training run (its search and its training) are built from."""

    namespace: str
    owner: Owner
    spec: TrainingPipelineSpec
    dataset_uri: str
    dataset_format: str
    dataset_digest: str
    schema: DatasetSchema
    credentials_secret: str | None
    """The Dataset's own Secret when it names one (the Job reads the data), else the operator's."""
    output_prefix: str
    labels: Mapping[str, str]
    settings: JobSettings


def training_job(
    run: RunInputs,
    *,
    name: str,
    gates: Mapping[str, Any] | None = None,
    search: SearchResult | None = None,
) -> Manifest:
    """The Job of one training run (``loopwright-trainer``).

    The Job is kept until history pruning deletes it, so ``kubectl logs`` works for the runs in
    ``status.runs``. After a search, ``search`` holds its trials: the
    best one's parameters are trained (over ``model.params``) and the trials go to the report.
    A factory's pipeline runs in its own ``model.image``.
    """
    params = dict(run.spec.model.params)
    if search is not None and search.best is not None:
        params.update(next(t.params for t in search.trials if t.index == search.best))
    args = [*_model_args(run, params=params), "--output-prefix", run.output_prefix]
    for type_name in run.spec.model.trusted_types:
        args += ["--trusted-type", type_name]
    if gates is not None:  # for the run's report: the thresholds and the champion it is held against
        args += ["--gates-json", _compact(gates)]
    if search is not None:
        args += ["--search-json", _compact(search.to_wire())]
    return _run_job(run, name=name, command=["loopwright-trainer", *args])


def search_job_name(run: str) -> str:
    """The name of a run's search Job: ``<run>-search`` within 63 characters."""
    return child_name(run, "search")


def search_job(run: RunInputs, *, name: str) -> Manifest:
    """The Indexed Job of a run's search (``loopwright-trial``): one pod per trial index.

    ``completions`` is the number of trials and ``parallelism`` the spec's; each index is retried
    ``job.backoffLimit`` times on its own (``backoffLimitPerIndex``), and exit codes 2 and 3 fail
    only that index (``FailIndex``), so a failed trial never stops the others. The Job ends Failed
    when any index failed; the operator then reads the trials that did succeed. Same image,
    resources and deadline as the training Job (the deadline covers the whole search).
    """
    spec, search = run.spec, run.spec.search
    if search is None:
        raise ValueError("search_job needs spec.search")
    trials = search_plan.trial_count(search)
    args = [*_model_args(run, params=dict(spec.model.params)),
            "--search-json", _compact(search.to_wire()), "--output-prefix", run.output_prefix]
    manifest = _run_job(run, name=name, command=["loopwright-trial", *args])
    job = manifest["spec"]
    del job["backoffLimit"]  # the per-index limit bounds retries; the Job-wide one would cut it short
    job.update({"completionMode": "Indexed", "completions": trials,
                "parallelism": min(search.parallelism, trials),
                "backoffLimitPerIndex": spec.job.backoff_limit})
    for rule in job["podFailurePolicy"]["rules"]:
        if rule["action"] == "FailJob":
            rule["action"] = "FailIndex"
    return manifest


def _run_job(run: RunInputs, *, name: str, command: list[str]) -> Manifest:
    """A run's Job (training or search): its pipeline's image, Secret, retries, deadline, resources
    and pod template."""
    spec, settings = run.spec, run.settings
    return _job_manifest(
        namespace=run.namespace, name=name, owner=run.owner, labels=run.labels, command=command,
        settings=replace(settings, image=spec.model.image) if spec.model.image else settings,
        secret=run.credentials_secret or settings.credentials_secret,
        backoff_limit=spec.job.backoff_limit, deadline=spec.job.active_deadline_seconds,
        ttl=None, role=Role.TRAINER, resources=spec.job.resources, overlay=spec.pod_template)


def _model_args(run: RunInputs, *, params: Mapping[str, Any]) -> list[str]:
    """The arguments the trainer and the trials share (loopwright.jobs.trainer.model.add_arguments)."""
    spec = run.spec
    model = (["--estimator", spec.model.estimator] if spec.model.estimator
             else ["--factory", str(spec.model.factory)])
    args = [
        "--dataset-uri", run.dataset_uri,
        "--format", run.dataset_format,
        "--dataset-digest", run.dataset_digest,
        "--schema-json", _compact(run.schema.to_wire()),
        *model,
        "--params-json", _compact(params),
        "--test-fraction", repr(spec.split.test_fraction),
        "--seed", str(spec.split.seed),
        "--stratify" if spec.split.stratify else "--no-stratify",
    ]
    if spec.metrics:
        args += ["--metrics", ",".join(str(m) for m in spec.metrics)]
    return args


def verification_job(
    *,
    namespace: str,
    name: str,
    owner: Owner,
    uri: str,
    sha256: str,
    labels: Mapping[str, str],
    settings: JobSettings,
    compiled: CompiledArtifact | None = None,
    trusted_types: Sequence[str] = (),
    image: str | None = None,
) -> Manifest:
    """The Job that proves an artifact exists, has its sha256 and loads with trusted types only
    (the built-in ones plus ``trusted_types``, declared by the ModelVersion), and that its compiled
    form (if any) answers identically on the hold-out rows. ``image``: the ModelVersion's own (a
    factory's code lives there), else the operator's ml image.

    The load runs in a pod rather than in the operator: the operator does not ship
    scikit-learn, and an artifact's memory use must not count against the operator's.
    """
    command = ["loopwright-verifier", "--uri", uri, "--sha256", sha256]
    for type_name in trusted_types:
        command += ["--trusted-type", type_name]
    if compiled is not None:
        command += ["--compiled-uri", compiled.uri, "--compiled-sha256", compiled.sha256,
                    "--holdout-uri", compiled.holdout_uri, "--holdout-sha256", compiled.holdout_sha256]
    return _job_manifest(
        namespace=namespace, name=name, owner=owner, labels=labels,
        command=command,
        settings=replace(settings, image=image) if image else settings, secret=settings.credentials_secret,
        backoff_limit=VERIFY_BACKOFF_LIMIT, deadline=VERIFY_DEADLINE_SECONDS,
        ttl=FINISHED_TTL_SECONDS, role=Role.VERIFIER, resources=None, overlay=None)


def _compact(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _env(*, settings: JobSettings, secret: str | None) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 (a private emptyDir, see _job_manifest)
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
    ]
    if settings.s3_endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint})
    if secret:
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                for key in (ACCESS_KEY, SECRET_KEY)]
    return env


def _job_manifest(
    *,
    namespace: str,
    name: str,
    owner: Owner,
    labels: Mapping[str, str],
    command: list[str],
    settings: JobSettings,
    secret: str | None,
    backoff_limit: int,
    deadline: int,
    ttl: int | None,
    role: Role,
    resources: ResourceRequirements | None,
    overlay: PodTemplate | None,
) -> Manifest:
    container: Manifest = {
        "name": _job.CONTAINER,
        "image": settings.image,
        "command": command,
        "env": _env(settings=settings, secret=secret),
        "securityContext": restricted_container_security(),
        "volumeMounts": [scratch_mount()],
        # The trainer's one-line JSON summary; the log tail if it died before writing it.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: Manifest = {
        "backoffLimit": backoff_limit,
        "activeDeadlineSeconds": deadline,
        "suspend": settings.suspend,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {
                "containerName": _job.CONTAINER, "operator": "In",
                "values": [_job.EXIT_BAD_PARAMETERS, _job.EXIT_BAD_DATA]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]},
        "template": apply(
            {"metadata": {"labels": dict(labels)},
             "spec": {
                 "restartPolicy": "Never",
                 "automountServiceAccountToken": False,
                 "enableServiceLinks": False,
                 "securityContext": restricted_pod_security(),
                 "containers": [container],
                 "volumes": [scratch_volume()],
             }},
            role=role, container=_job.CONTAINER, selector=labels, defaults=settings.pod_defaults,
            default_resources=settings.default_resources.get(role), resources=resources, overlay=overlay),
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }
