"""The plugin's pure parts: the loop tree, tables, widths, colour, and what each action writes."""

from __future__ import annotations

import copy
import re

import pytest

from loopwright.api import names
from loopwright.api.kinds import ALL_KINDS
from loopwright.cli import actions, commands, fmt, table, tables, views
from loopwright.cli.errors import CliError
from loopwright.cli.loop import select
from loopwright.cli.style import Health, Style, width
from unit.cli_objects import NOW, objects

PLAIN = Style(color=False, width=None)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def loop():
    return select("churn", objects(), namespace="demo")


def test_names_used_by_the_plugin_are_the_apis():
    """The plugin reads names from api.names (no pydantic); the models are built from the same."""
    assert [(k.kind, k.plural, k.short_names) for k in names.ALL] == [
        (k.kind, k.plural, k.short_names) for k in ALL_KINDS
    ]


def test_the_tree_runs_from_the_data_to_the_drift_policy():
    lines = table.tree(views.tree(loop(), NOW), PLAIN)
    assert lines[0].split() == ["NAME", "KIND", "STATUS", "AGE", "INFO"]
    order = [re.sub(r"^[│├└─ ]*\S?\s", "", line).split()[0] for line in lines[1:]]
    # Dataset -> pipeline -> data version -> runs -> the version each registered.
    assert order[:8] == [
        "churn",
        "churn",
        "churn",
        "a1a1a1a1a1a1",
        "churn-5",
        "churn-4",
        "churn-v4",
        "b2b2b2b2b2b2",
    ]
    text = "\n".join(lines)
    assert (
        "└─✔ churn-v4     ModelVersion      Validated    86m  v4 · accuracy 0.871 f1_macro 0.821 · "
        "gate 3/3 ✔" in text
    )
    assert (
        "churn-v3     ModelVersion      Validated    8h   v3 · accuracy 0.862 f1_macro 0.812 · gate 2/2 ✔ "
        "· [production]" in text
    )
    # A version without a run of the pipeline (registered by hand) hangs off the model itself.
    assert re.search(r"^├─✖ churn-v2\s+ModelVersion\s+Rejected .*gate ✖ min:accuracy", text, re.M)
    # The run the DriftPolicy asked for points at the report of the check that asked.
    assert re.search(r"churn-5 .*trigger Drift · for 60s · requested by DriftPolicy churn \(report: kubectl "
                     r"loopwright report dp/churn --retrain\)", text)
    # The failed run says why.
    assert re.search(r"churn-2\s+Run\s+Failed .*BadData: label has one class", text)


def test_the_tree_shows_the_canary_step_weight_and_last_analysis():
    lines = table.tree(views.tree(loop(), NOW), PLAIN)
    text = "\n".join(lines)
    assert re.search(
        r"^└─⟳ churn\s+Deployment\s+Progressing\s+9h\s+stable v3 · canary v4 step 1/2 weight 10%$", text, re.M
    )
    assert re.search(r"churn-v3\s+stable\s+2/2 ready\s+weight 90%$", text, re.M)
    assert re.search(
        r"churn-v4\s+canary\s+1/1 ready\s+3m\s+step 1/2 · weight 10% of 10% · pause 5m, 3m left", text
    )
    assert re.search(r"analysis\s+Analysis\s+Pass\s+30s\s+2 checks at this step · 0/2 failures", text)
    assert re.search(r"latencyP95\s+metric\s+Pass\s+canary p95 4.0 ms, at most 50.0 ms allowed", text)


def test_the_tree_shows_each_feature_against_its_threshold_drifted_first():
    lines = table.tree(views.tree(loop(), NOW), PLAIN)
    features = [line for line in lines if " feature " in line]
    assert [re.sub(r"^[│├└─ ]*\S\s", "", f).split()[0] for f in features] == [
        "plan",
        "tenure_months",
        "monthly_charges",
    ]
    assert features[0].endswith("chiSquared p 0.0031 < 0.05")
    assert features[1].endswith("psi 0.3121 > 0.2")
    assert features[2].endswith("psi 0.0213 ≤ 0.2")
    policy = next(line for line in lines if re.search(r"\sDriftPolicy\s{2,}", line))
    assert "✖ churn" in policy
    assert "Drift" in policy
    assert "2/2 checks" in policy
    assert "1,840 samples" in policy


def test_many_features_are_cut_to_the_worst_with_a_pointer_to_drift():
    objs = objects()
    policy = objs[names.DRIFT_POLICY][0]
    policy["status"]["features"] = [
        {"name": f"f{i:02d}", "method": "psi", "statistic": i / 100, "threshold": 0.2, "drifted": i > 20}
        for i in range(30)
    ]
    node = views.policy_node(policy, NOW)
    names_shown = [c.name for c in node.children]
    assert names_shown[:3] == ["f29", "f28", "f27"]  # drifted, worst first
    assert len([c for c in node.children if c.kind == "feature"]) == views.FEATURE_ROWS
    assert node.children[views.FEATURE_ROWS].name == "20 more"
    assert node.children[views.FEATURE_ROWS].info == "kubectl loopwright drift churn"


def test_header_summarises_serving_rollout_drift_and_the_last_run():
    lines = table.fields(views.header(loop(), NOW), PLAIN)
    assert lines == [
        "Model:         churn",
        "Namespace:     demo",
        "Production:    churn-v3 · accuracy 0.862",
        "Rollout churn: Progressing · canary churn-v4 at 10% · analysis Pass",
        "Drift churn:   Drift · drifted: tenure_months, plan",
        "Last run:      churn-5 · Running · trigger Drift · 60s ago",
    ]


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_lines_fit_the_terminal_and_cut_with_an_ellipsis(columns):
    lines = commands.render_get(loop(), Style(color=False, width=columns), NOW)
    assert max(width(line) for line in lines) <= columns
    assert any(line.endswith("…") for line in lines)


def test_a_pipe_gets_whole_lines_and_no_colour():
    lines = commands.render_get(loop(), PLAIN, NOW)
    assert not any(ANSI.search(line) for line in lines)
    assert any(
        "0 of 180 canary requests answered 5xx (0.00%, at most 1.00% allowed)" in line for line in lines
    )


def test_colour_marks_health_and_does_not_change_the_layout():
    plain = commands.render_get(loop(), Style(color=False, width=100), NOW)
    coloured = commands.render_get(loop(), Style(color=True, width=100), NOW)
    assert [ANSI.sub("", line) for line in coloured] == plain
    failed = next(line for line in coloured if "churn-2" in line)
    assert "\x1b[31m" in failed  # red for the failed run
    assert "\x1b[1mNAME" in coloured[7]  # bold headers


def test_ascii_terminals_get_ascii_symbols_and_branches():
    lines = commands.render_get(loop(), Style(color=False, width=None, unicode=False), NOW)
    assert all(line.isascii() for line in lines)
    assert any(line.startswith("|-+ churn") for line in lines)


def test_style_follows_no_color_and_the_stream(monkeypatch, tmp_path):
    class Tty:
        encoding = "utf-8"

        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert Style.for_stream(Tty()).color
    assert not Style.for_stream(Tty(), no_color=True).color
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Style.for_stream(Tty()).color
    with (tmp_path / "out").open("w", encoding="ascii") as pipe:
        style = Style.for_stream(pipe)
    assert (style.color, style.width, style.unicode) == (False, None, False)


def test_durations_read_like_kubectl():
    assert [
        fmt.duration(s) for s in (5, 119, 200, 600, 3 * 3600 + 60, 30 * 3600, 3 * 86400 + 7200, 20 * 86400)
    ] == ["5s", "119s", "3m20s", "10m", "3h1m", "30h", "3d2h", "20d"]
    assert fmt.number(0.000012) == "1.200e-05"
    assert fmt.number(12000) == "12,000"
    assert fmt.digest("sha256:" + "ab" * 32) == "abababababab"


def test_versions_table_has_one_column_per_metric_and_marks_the_best():
    headers, rows = tables.versions(loop(), NOW)
    assert headers == [
        "VERSION",
        "PHASE",
        "DATASET",
        "RUN",
        "TRIGGER",
        "ACCURACY",
        "F1_MACRO",
        "GATE",
        "ALIASES",
        "CREATED",
    ]
    assert [[c.text for c in r] for r in rows][:2] == [
        [
            "churn-v4",
            "Validated",
            "a1a1a1a1a1a1",
            "churn-4",
            "NewData",
            "0.871",
            "0.821",
            "3/3 ✔",
            "-",
            "86m",
        ],
        [
            "churn-v3",
            "Validated",
            "b2b2b2b2b2b2",
            "churn-3",
            "Manual",
            "0.862",
            "0.812",
            "2/2 ✔",
            "production",
            "8h",
        ],
    ]
    assert rows[0][5].health == Health.OK  # the best accuracy
    assert rows[2][7].health == Health.BAD  # churn-v2's failed gate
    record = tables.version_record(loop().versions[0], loop())
    assert record["trigger"] == "NewData"
    assert record["gate"][2]["name"] == "champion"


def test_lineage_runs_from_the_source_to_where_the_version_serves():
    lines = table.tree(tables.lineage(loop().versions[0], loop(), NOW), PLAIN)
    kinds = [re.sub(r"^[│├└─ ]*\S?\s", "", line).split()[1] for line in lines[1:]]
    assert "s3://loopwright/data/churn/ (csv)" in lines[1]
    assert [
        k for k in kinds if k in ("Dataset", "data", "TrainingPipeline", "Run", "ModelVersion", "Deployment")
    ] == ["Dataset", "data", "TrainingPipeline", "Run", "ModelVersion", "Deployment"]
    text = "\n".join(lines)
    assert "n_estimators=50 · seed 42" in text
    assert "serves it as canary: 1/1 ready, weight 10%" in text
    assert "champion churn-v3 0.862" in text
    assert "runs/churn-4/report.html (kubectl loopwright report mv/churn-v4)" in text


def test_drift_table_shows_each_feature_and_its_last_checks():
    policy = objects()[names.DRIFT_POLICY][0]
    headers, rows = tables.drift_features(policy)
    assert headers[-1] == "LAST CHECKS"
    text = {r[0].text: [c.text for c in r] for r in rows}
    # Oldest first: no verdict, then the plan-only check, then two with both drifting.
    assert text["tenure_months"] == ["tenure_months", "psi", "0.3121", "0.2", "drifted", "·✔✖✖"]
    assert text["plan"][-1] == "·✖✖✖"
    assert text["monthly_charges"][-1] == "·✔✔✔"
    assert text["(prediction)"][:5] == ["(prediction)", "psi", "0.0504", "0.2", "ok"]
    _, checks = tables.drift_checks(policy, NOW)
    assert [c[4].text for c in checks] == ["Drift", "Drift", "NoDrift", "InsufficientData"]


def test_promote_and_abort_name_the_canary_version():
    deployment = objects()[names.DEPLOYMENT][0]
    action = actions.promote(deployment)
    assert action.patch == {"spec": {"rollout": {"promote": {"version": 4}}}}
    assert action.fields() == ['spec.rollout.promote = {"version": 4}']
    assert action.kubectl("demo") == (
        'kubectl -n demo patch mld churn --type merge -p \'{"spec":{"rollout":{"promote":{"version":4}}}}\''
    )
    deployment["spec"]["rollout"]["promote"] = {"version": 4}
    aborted = actions.abort(deployment)
    # The API refuses promote and abort of the same version: aborting clears the promote.
    assert aborted.patch == {"spec": {"rollout": {"abort": {"version": 4}, "promote": None}}}
    assert aborted.notes


def test_without_a_canary_promote_says_why_unless_a_version_is_named():
    deployment = copy.deepcopy(objects()[names.DEPLOYMENT][0])
    del deployment["status"]["canary"]
    with pytest.raises(CliError, match=r"no canary to promote .*stable: churn-v3"):
        actions.promote(deployment)
    assert actions.promote(deployment, version=7).patch["spec"]["rollout"]["promote"] == {"version": 7}


def test_pause_and_resume_write_only_paused():
    deployment = objects()[names.DEPLOYMENT][0]
    assert actions.pause(deployment, paused=True).patch == {"spec": {"rollout": {"paused": True}}}
    deployment["status"]["canary"]["step"] = 1  # the second step has no pause: it waits for a promote
    resume = actions.pause(deployment, paused=False)
    assert resume.patch == {"spec": {"rollout": {"paused": False}}}
    assert "holds until promoted" in resume.notes[0]


def test_train_writes_a_new_request_and_says_the_trigger_is_manual():
    pipeline = objects()[names.TRAINING_PIPELINE][0]
    action = actions.train(pipeline, now=NOW)
    assert action.patch == {
        "metadata": {
            "annotations": {
                "loopwright.dev/train-request": "kubectl-20250304T120000Z",
                "loopwright.dev/train-trigger": "Manual",
            }
        }
    }
    assert (
        action.fields()[0]
        == 'metadata.annotations["loopwright.dev/train-request"] = "kubectl-20250304T120000Z"'
    )
    assert any("churn-5 is in progress" in n for n in action.notes)
    assert actions.gitops_manager(pipeline) == "Argo CD"


def test_retrain_picks_the_pipeline_of_the_production_version():
    loop_ = loop()
    pipeline, why = actions.retrain_target(loop_.pipelines, loop_.versions[1], model="churn")
    assert fmt.name(pipeline) == "churn"
    assert "churn-v3 in production" in why
    with pytest.raises(CliError, match="no TrainingPipeline trains model 'x'"):
        actions.retrain_target([], None, model="x")


def test_the_tree_tells_what_the_retrain_waits_for_and_what_is_queued() -> None:
    flying = {"retrain": {"trigger": "Drift", "phase": "AwaitingRollout",
                          "requestedTime": "2025-03-04T11:58:00Z"}}
    assert views.retrain_info(flying, NOW) == "retrain Drift AwaitingRollout 2m ago"
    settled = {"retrain": {"trigger": "Drift", "phase": "Settled", "outcome": "NoNewData",
                           "settledTime": "2025-03-04T11:59:00Z"}}
    assert views.retrain_info(settled, NOW) == "retrain Drift NoNewData 60s ago"
    assert views.retrain_info({"lastRetrainTrigger": "Drift", "lastRetrainTime": "2025-03-04T11:00:00Z"},
                              NOW) == "retrain Drift 60m ago"
    assert views.retrain_info({}, NOW) is None
    deployment = {"metadata": {"name": "churn"}, "spec": {"rollout": {"steps": [{"weight": 50}]}},
                  "status": {"phase": "Progressing", "stable": {"version": 1},
                             "canary": {"version": 2, "step": 0, "weight": 50}, "queued": {"version": 3}}}
    assert "v3 queued" in views.deployment_node(deployment, [], NOW).info
