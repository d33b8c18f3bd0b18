"""Manual control of a canary on a real cluster: promote and abort scoped to one version, and an
operator restart in the middle of a step that resumes at that same step."""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ANALYSIS = {"interval": "2s", "failureLimit": 1, "minRequests": 5, "metrics": {"errorRate": {"max": 0.01}}}


def _canary(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    canary: dict[str, Any] | None = (lw.get(kube, namespace, "deployments", name).get("status") or {}).get(
        "canary"
    )
    return canary


def test_manual_promote_and_abort_apply_to_their_version_only(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    # A step without pause holds until a person promotes the version.
    rollout = {"steps": [{"weight": 50}], "analysis": ANALYSIS}
    client = lw.serve_under_traffic(kube, s3, namespace, model="fraud", rollout=rollout, seconds=600)
    lw.register(kube, s3, namespace, model="fraud", version=2, kind="good")

    obj = lw.wait_phase(kube, namespace, "fraud", "Paused", timeout=120)
    assert obj["status"]["canary"]["version"] == 2
    assert lw.condition(obj, "Progressing")["reason"] == "WaitingForPromotion"
    # Promoting another version changes nothing; then promote version 2.
    lw.patch_rollout(kube, namespace, "fraud", {"promote": {"version": 7}})
    time.sleep(4)
    assert lw.get(kube, namespace, "deployments", "fraud")["status"]["phase"] == "Paused"
    lw.patch_rollout(kube, namespace, "fraud", {"promote": {"version": 2}})
    kube.wait(
        lambda: (
            (lw.get(kube, namespace, "deployments", "fraud")["status"].get("stable") or {}).get("version")
            == 2
        ),
        timeout=120,
        what="version 2 promoted by hand",
        interval=1,
    )

    # Version 3 becomes the canary; aborting it rejects it, while promote: 2 (still in the spec,
    # as it would be in Git) has no effect on it.
    lw.register(kube, s3, namespace, model="fraud", version=3, kind="good")
    kube.wait(
        lambda: (_canary(kube, namespace, "fraud") or {}).get("version") == 3,
        timeout=120,
        what="version 3 as the canary",
        interval=1,
    )
    lw.patch_rollout(kube, namespace, "fraud", {"abort": {"version": 3}})
    obj = lw.wait_phase(kube, namespace, "fraud", "RolledBack", timeout=120)
    status = obj["status"]
    assert status["stable"]["version"] == 2
    assert status["rejectedVersions"] == [3]
    assert (status["history"][0]["version"], status["history"][0]["event"]) == (3, "Aborted")
    lw.events_once(kube, namespace, "fraud", reason="Aborted", type_="Warning")
    kube.wait(
        lambda: lw.workloads(kube, namespace, "fraud") == {"fraud-v2": 1},
        timeout=60,
        what="the aborted canary's workload deleted",
    )
    result = lw.stop_client(kube, namespace, client)
    print(f"traffic during promote and abort: {result}")
    assert result["failed"] == 0, result
    assert set(result["codes"]) == {"200"}, result
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "fraud")


def test_operator_restart_mid_canary_resumes_at_the_same_step(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    rollout = {
        "steps": [
            {"weight": 10, "pause": "5s"},
            {"weight": 30, "pause": "20s"},
            {"weight": 50, "pause": "5s"},
        ],
        "analysis": ANALYSIS,
    }
    client = lw.serve_under_traffic(kube, s3, namespace, model="eta", rollout=rollout, seconds=600)
    lw.register(kube, s3, namespace, model="eta", version=2, kind="good")
    kube.wait(
        lambda: (_canary(kube, namespace, "eta") or {}).get("step") == 1,
        timeout=120,
        what="the canary at step 2 (index 1)",
        interval=0.5,
    )
    before = _canary(kube, namespace, "eta")
    assert before is not None

    def step_events() -> list[str]:
        return [e.message for e in lw.events(kube, namespace, "eta") if e.reason == "CanaryStep"]

    # The step's Event follows its status: killed in between, the Event would be lost for good.
    kube.wait(lambda: len(step_events()) == 2, timeout=30, what="the second step's Event")
    operator.stop(kill=True)  # no goodbye: as if the operator's pod was lost

    time.sleep(5)
    after_kill = _canary(kube, namespace, "eta")
    assert after_kill == before or after_kill["step"] == 1  # nobody acts while the operator is down
    steps_before = step_events()
    operator.start()
    time.sleep(4)
    resumed = _canary(kube, namespace, "eta")
    assert resumed is not None
    assert resumed["step"] == 1
    assert resumed["stepStartTime"] == before["stepStartTime"]  # the same step, not restarted
    kube.wait(
        lambda: (
            (lw.get(kube, namespace, "deployments", "eta")["status"].get("stable") or {}).get("version") == 2
        ),
        timeout=180,
        what="version 2 promoted after the restart",
        interval=1,
    )
    steps = step_events()
    # Each step announced once: steps 1 and 2 before the restart, only step 3 after it.
    assert len(steps_before) == 2, steps_before
    assert len(steps) == 3, steps
    assert "step 3/3" in steps[-1]
    result = lw.stop_client(kube, namespace, client)
    print(f"traffic across the restart: {result}")
    assert result["failed"] == 0, result
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "eta")


def test_a_new_version_during_a_canary_waits_for_it_to_finish(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    # spec.rollout.onNewVersion Queue (the default): version 3 arriving while version 2 is the canary
    # waits behind it (status.queued) and becomes the next canary once version 2 is promoted.
    rollout = {"steps": [{"weight": 50}], "analysis": ANALYSIS}
    client = lw.serve_under_traffic(kube, s3, namespace, model="queue", rollout=rollout, seconds=600)
    lw.register(kube, s3, namespace, model="queue", version=2, kind="good")
    obj = lw.wait_phase(kube, namespace, "queue", "Paused", timeout=120)
    assert obj["status"]["canary"]["version"] == 2
    lw.register(kube, s3, namespace, model="queue", version=3, kind="good")

    def queued() -> dict[str, Any] | None:
        status = lw.get(kube, namespace, "deployments", "queue").get("status") or {}
        return status if (status.get("queued") or {}).get("version") == 3 else None

    status = kube.wait(queued, timeout=60, what="version 3 queued", interval=1)
    assert status["canary"]["version"] == 2  # not superseded
    lw.events_once(kube, namespace, "queue", reason="VersionQueued")
    lw.patch_rollout(kube, namespace, "queue", {"promote": {"version": 2}})

    def next_canary() -> dict[str, Any] | None:
        status = lw.get(kube, namespace, "deployments", "queue").get("status") or {}
        stable, canary = status.get("stable") or {}, status.get("canary") or {}
        return status if (stable.get("version"), canary.get("version")) == (2, 3) else None

    status = kube.wait(next_canary, timeout=120, what="version 2 promoted, version 3 the canary", interval=1)
    assert not status.get("queued")
    assert [(h["version"], h["event"]) for h in status["history"]] == [(2, "Promoted"), (1, "Deployed")]
    assert "CanarySuperseded" not in {e.reason for e in lw.events(kube, namespace, "queue")}
    result = lw.stop_client(kube, namespace, client)
    assert result["failed"] == 0, result
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "queue")
