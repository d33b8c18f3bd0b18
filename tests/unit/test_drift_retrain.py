"""One retrain per cause: a DriftPolicy's retrain from its request to its settlement (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loopwright.api.driftpolicy import DriftPolicySpec, RetrainOutcome, RetrainPhase, RetrainStatus
from loopwright.api.modelversion import ModelPhase
from loopwright.api.pipeline import Run, RunPhase, RunTrigger
from loopwright.core.drift import retrain
from loopwright.core.drift.retrain import Progress, Rollout

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ASKED = retrain.requested(token="watch-100", pipeline="train", trigger=RunTrigger.DRIFT, now=NOW)


def _run(
    id_: int = 4,
    *,
    phase: RunPhase = RunPhase.RUNNING,
    request: str | None = "watch-100",
    start: datetime = NOW + timedelta(seconds=1),
    **extra: Any,
) -> Run:
    return Run(
        id=id_,
        name=f"train-{id_}",
        trigger=RunTrigger.DRIFT,
        phase=phase,
        request=request,
        start_time=start,
        dataset_version="sha256:" + "d" * 64,
        **extra,
    )


def _advance(
    runs: list[Run],
    *,
    phase: ModelPhase | None = None,
    rollout: Rollout | None = None,
    before: RetrainStatus = ASKED,
) -> RetrainStatus:
    progress = Progress(pipeline_found=True, runs=runs, version_phase=phase, rollout=rollout or Rollout())
    return retrain.advance(before, progress, now=NOW + timedelta(minutes=5))


def test_a_request_waits_for_its_run() -> None:
    assert ASKED.phase == RetrainPhase.AWAITING_RUN
    waiting = _advance([_run(3, phase=RunPhase.SUCCEEDED, request=None, start=NOW - timedelta(hours=1))])
    assert (waiting.phase, waiting.run) == (RetrainPhase.AWAITING_RUN, None)
    assert "waiting for TrainingPipeline train" in (waiting.message or "")
    running = _advance([_run()])
    assert (running.phase, running.run) == (RetrainPhase.AWAITING_RUN, "train-4")
    gone = retrain.advance(ASKED, Progress(pipeline_found=False), now=NOW)
    assert gone.phase == RetrainPhase.AWAITING_RUN
    assert "not found" in (gone.message or "")


def test_the_run_is_the_one_with_the_token_else_the_first_started_after_the_request() -> None:
    ours = _run(5, request="watch-100")
    other = _run(4, request="someone-else")
    assert retrain.answering_run(ASKED, [ours, other]) == ours
    # Our token was never written (someone else's request was pending): the next run answers it.
    before = _run(3, request=None, start=NOW - timedelta(seconds=5))
    assert retrain.answering_run(ASKED, [other, before]) == other
    assert retrain.answering_run(ASKED, [before]) is None


@pytest.mark.parametrize(
    ("run", "phase", "rollout", "expected", "outcome"),
    [
        (
            _run(phase=RunPhase.FAILED, reason="OutOfMemory"),
            None,
            None,
            RetrainPhase.SETTLED,
            RetrainOutcome.RUN_FAILED,
        ),
        (
            _run(phase=RunPhase.SKIPPED, reason="NoNewData", message="no new data since version 1"),
            None,
            None,
            RetrainPhase.SETTLED,
            RetrainOutcome.NO_NEW_DATA,
        ),
        (_run(phase=RunPhase.SUCCEEDED, model_version="m-v7"), None, None, RetrainPhase.AWAITING_GATE, None),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.PENDING,
            None,
            RetrainPhase.AWAITING_GATE,
            None,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.REJECTED,
            None,
            RetrainPhase.SETTLED,
            RetrainOutcome.REJECTED,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=6),
            RetrainPhase.AWAITING_ROLLOUT,
            None,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=6, canary=7),
            RetrainPhase.AWAITING_ROLLOUT,
            None,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=5, canary=6, queued=7),
            RetrainPhase.AWAITING_ROLLOUT,
            None,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=7),
            RetrainPhase.SETTLED,
            RetrainOutcome.PROMOTED,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=6, rejected={7}, history={7: "RolledBack"}),
            RetrainPhase.SETTLED,
            RetrainOutcome.ROLLED_BACK,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=6, history={7: "Aborted"}),
            RetrainPhase.SETTLED,
            RetrainOutcome.ROLLED_BACK,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=6, canary=8),
            RetrainPhase.SETTLED,
            RetrainOutcome.SUPERSEDED,
        ),
        (
            _run(phase=RunPhase.SUCCEEDED, model_version="m-v7"),
            ModelPhase.VALIDATED,
            Rollout(stable=3, follows_latest=False),
            RetrainPhase.SETTLED,
            RetrainOutcome.NOT_ROLLED_OUT,
        ),
    ],
)
def test_where_the_retrain_stands(
    run: Run,
    phase: ModelPhase | None,
    rollout: Rollout | None,
    expected: RetrainPhase,
    outcome: RetrainOutcome | None,
) -> None:
    after = _advance([run], phase=phase, rollout=rollout)
    assert (after.phase, after.outcome) == (expected, outcome)
    assert after.run == run.name
    assert after.message
    if expected == RetrainPhase.SETTLED:
        assert after.settled_time == NOW + timedelta(minutes=5)
        # A settled retrain never changes again.
        assert _advance([], before=after) == after
    if outcome == RetrainOutcome.NO_NEW_DATA:
        assert "new labelled data" in (after.message or "")
        assert after.dataset_version == run.dataset_version


def test_a_run_that_left_the_history_is_lost() -> None:
    known = _advance([_run()])
    assert known.run == "train-4"
    assert _advance([_run(9, request=None)], before=known).outcome == RetrainOutcome.LOST


def _spec(cooldown: str = "10m") -> DriftPolicySpec:
    return DriftPolicySpec.model_validate(
        {
            "deploymentRef": {"name": "d"},
            "actions": {"retrain": {"pipelineRef": {"name": "train"}, "cooldown": cooldown}},
        }
    )


def _settled(outcome: RetrainOutcome, *, dataset: str = "sha256:old") -> RetrainStatus:
    return ASKED.model_copy(
        update={
            "phase": RetrainPhase.SETTLED,
            "outcome": outcome,
            "dataset_version": dataset,
            "settled_time": NOW,
        }
    )


def test_what_holds_the_next_retrain_back() -> None:
    spec = _spec()
    later = NOW + timedelta(hours=1)
    # In flight: held, however long ago it was requested.
    held = retrain.hold(
        spec, retrain=ASKED, last_retrain=None, dataset_version=None, now=NOW + timedelta(days=9)
    )
    assert held is not None
    assert held.reason == "AwaitingRun"
    # Settled: the cooldown counts from the settlement, not from the request.
    cooling = retrain.hold(
        spec,
        retrain=_settled(RetrainOutcome.PROMOTED),
        last_retrain=None,
        dataset_version=None,
        now=NOW + timedelta(minutes=9),
    )
    assert cooling is not None
    assert (cooling.reason, cooling.until) == ("Cooldown", NOW + timedelta(minutes=10))
    assert (
        retrain.hold(
            spec,
            retrain=_settled(RetrainOutcome.PROMOTED),
            last_retrain=None,
            dataset_version=None,
            now=later,
        )
        is None
    )
    # Nothing new to learn: held until the Dataset has a new validated version, whatever the cooldown.
    stale = _settled(RetrainOutcome.NO_NEW_DATA)
    for version in ("sha256:old", None):
        waiting = retrain.hold(spec, retrain=stale, last_retrain=None, dataset_version=version, now=later)
        assert waiting is not None
        assert waiting.reason == "NoNewData"
        assert "new labelled data" in waiting.message
    assert (
        retrain.hold(spec, retrain=stale, last_retrain=None, dataset_version="sha256:new", now=later) is None
    )
    # A retrain recorded before status.retrain existed: the cooldown from its request.
    assert retrain.hold(spec, retrain=None, last_retrain=NOW, dataset_version=None, now=NOW) is not None
    assert retrain.hold(spec, retrain=None, last_retrain=NOW, dataset_version=None, now=later) is None
    no_action = DriftPolicySpec.model_validate({"deploymentRef": {"name": "d"}})
    assert retrain.hold(no_action, retrain=ASKED, last_retrain=None, dataset_version=None, now=NOW) is None


def test_the_retraining_condition_says_what_it_waits_for() -> None:
    flying = retrain.verdict(ASKED, wanted=True, held=retrain.Hold(reason="AwaitingRun", message="x"))
    assert (flying.status, flying.reason) == (True, "AwaitingRun")
    assert "watch-100" in flying.message
    stale = _settled(RetrainOutcome.NO_NEW_DATA)
    hold = retrain.hold(_spec(), retrain=stale, last_retrain=None, dataset_version=None, now=NOW)
    needs = retrain.verdict(stale, wanted=True, held=hold)
    assert (needs.status, needs.reason) == (False, "NoNewData")
    assert "new labelled data" in needs.message
    quiet = retrain.verdict(_settled(RetrainOutcome.PROMOTED), wanted=False, held=None)
    assert (quiet.status, quiet.reason) == (False, "Promoted")
    assert retrain.verdict(None, wanted=False, held=None).reason == "NoRetrain"


def test_the_status_round_trips_through_its_wire_form() -> None:
    after = _advance(
        [_run(phase=RunPhase.SUCCEEDED, model_version="m-v7")],
        phase=ModelPhase.VALIDATED,
        rollout=Rollout(stable=6, canary=7),
    )
    wire = after.model_dump(mode="json", by_alias=True)
    assert wire["phase"] == "AwaitingRollout"
    assert wire["outcome"] is None  # written as null: a merge patch then clears the last outcome
    assert RetrainStatus.model_validate(wire) == after
