"""The monitor on a local deployment: drift, skew, invariants, staleness, live quality,
and ``credit-risk monitor`` with its report, its HTML page and its exit codes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from credit_risk import cli, names
from credit_risk.monitoring.monitor import run_monitor
from credit_risk.monitoring.report import ALERT, OK, SKIPPED
from credit_risk.store import create_store
from tests.integration.api.conftest import MODEL_NAME
from tests.integration.monitoring.world import (
    AS_OF,
    END,
    HASH_KEY,
    SNAPSHOT_ID,
    WINDOW_DAYS,
    World,
    rounded_amounts,
)

PER_DAY = 400


def _older(table):
    return pc.greater_equal(table.column("age"), 55)


def test_a_stable_stream_raises_no_alarm(world, store):
    # given three days of traffic from the customers the model was built for
    world.write_log(world.traffic(store, world.customers(), PER_DAY))

    # when the monitor runs on the window
    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then nothing drifted, nothing is skewed, no input broke a rule, nothing is stale
    checks = report.checks
    assert report.data["counts"]["scores"] == WINDOW_DAYS * PER_DAY
    assert checks["drift"]["alerts"] == 0, checks["drift"]
    assert checks["drift"]["max_psi"] < 0.1
    assert checks["invariants"]["violations"] == 0, checks["invariants"]
    assert checks["skew"]["status"] == OK
    assert checks["skew"]["compared"] == 200
    assert checks["staleness"]["status"] == OK
    assert checks["quality"]["status"] == SKIPPED  # no labels yet
    assert {checks[name]["status"] for name in checks if name != "fairness"} <= {OK, SKIPPED}
    # The model approves the under-25s less than older applicants (their risk is
    # higher): fairness may warn on that, a property of the model, not of the stream,
    # and nothing alerts (test_monitor_fairness.py judges fairness).
    assert checks["fairness"]["alerts"] == 0
    assert report.status != ALERT
    points = {(p.name, p.dimensions.get("feature")): p.value for p in report.metric_points()}
    assert points[(names.METRIC_DRIFT_ALERTS, None)] == 0
    assert points[(names.METRIC_FAIRNESS_ALERTS, None)] == 0
    assert points[(names.METRIC_SCORES_MONITORED, None)] == WINDOW_DAYS * PER_DAY
    assert (names.METRIC_PSI, "age") in points
    assert (names.METRIC_PSI, "score") in points


def test_a_drifted_stream_raises_the_drift_alarm(world, store):
    # given traffic from customers aged 55 and over only
    world.write_log(world.traffic(store, world.customers(_older), PER_DAY))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then age (and the score, older customers being riskier) drifted past the alert PSI
    drift = report.checks["drift"]
    assert drift["features"]["age"]["status"] == ALERT
    assert drift["features"]["age"]["psi"] > 0.25
    assert drift["alerts"] >= 1
    assert report.status == ALERT
    points = {(p.name, p.dimensions.get("feature")): p.value for p in report.metric_points()}
    assert points[(names.METRIC_DRIFT_ALERTS, None)] == drift["alerts"]
    assert points[(names.METRIC_PSI, "age")] == drift["features"]["age"]["psi"]


def test_skew_catches_a_changed_feature_computation(world, tmp_path):
    # given a store loaded by a path that rounds the average amount (the lake keeps
    # the feature job's exact values)
    with create_store(world.settings()) as store:
        store.migrate()
        store.load_snapshot(rounded_amounts(world.snapshot), SNAPSHOT_ID, AS_OF)
        world.write_log(world.traffic(store, world.customers(), PER_DAY))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    # then the sampled customers with previous loans mismatch on that feature only
    skew = report.checks["skew"]
    assert skew["status"] == ALERT
    assert list(skew["by_feature"]) == ["avg_amount_loans_previous"]
    assert 0 < skew["mismatches"] <= skew["compared"] == 200
    example = skew["examples"][0]
    assert example["served"] == round(example["offline"])
    # the rounding keeps values in range: only the skew check can see it
    assert report.checks["invariants"]["violations"] == 0


def test_skew_with_the_unchanged_computation_finds_nothing(world, store):
    world.write_log(world.traffic(store, world.customers(), 100))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    assert report.checks["skew"]["mismatches"] == 0
    assert report.checks["skew"]["compared"] == 200


def test_broken_inputs_are_counted_as_invariant_violations(world):
    # given a load that turns missing job tenures into 0 (17% of customers have none)
    table = world.snapshot
    index = table.schema.get_field_index("years_on_the_job")
    zeros = pc.fill_null(table.column("years_on_the_job"), 0)
    with create_store(world.settings()) as store:
        store.migrate()
        store.load_snapshot(table.set_column(index, "years_on_the_job", zeros), SNAPSHOT_ID, AS_OF)
        world.write_log(world.traffic(store, world.customers(), PER_DAY))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    tenure = report.checks["invariants"]["features"]["years_on_the_job"]
    assert tenure["null_rate"] == 0.0
    assert tenure["violations"] == 1  # the null rate, once
    assert report.checks["invariants"]["status"] == ALERT
    assert report.checks["skew"]["by_feature"].get("years_on_the_job", 0) > 0


def test_a_window_without_scores_still_reports_staleness(world, store):
    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    assert report.data["counts"]["scores"] == 0
    assert any("no scores" in note for note in report.data["notes"])
    for name in ("drift", "invariants", "skew"):
        assert report.check_status(name) == SKIPPED
        assert "no scores" in report.checks[name]["reason"]
    staleness = report.checks["staleness"]
    assert staleness["features"]["age_days"] == 2
    assert staleness["features"]["snapshot_id"] == SNAPSHOT_ID
    assert staleness["model"]["age_days"] < 1


def test_stale_features_alert(world, store):
    report = run_monitor(world.settings(max_features_age_days=1), end=END, hash_id=world.hash_id)
    assert report.checks["staleness"]["features"]["status"] == ALERT
    assert report.checks["staleness"]["alerts"] == 1


def test_live_quality_on_delayed_labels(world, store):
    # given outcomes drawn from the served probabilities: the model is right
    served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    rng = np.random.default_rng(7)
    world.write_labels(served, lambda p: int(rng.random() < p))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    quality = report.checks["quality"]
    assert quality["labelled"] >= 300
    assert quality["calibration"]["status"] == OK
    assert quality["auc_drop"] < 0.05
    assert quality["status"] == OK


def test_live_quality_alerts_when_outcomes_no_longer_follow_the_score(world, store):
    # given outcomes unrelated to the score (the population's risk changed)
    served = world.traffic(store, world.customers(), PER_DAY)
    world.write_log(served)
    rng = np.random.default_rng(7)
    world.write_labels(served, lambda p: int(rng.random() < 0.3))

    report = run_monitor(world.settings(), end=END, hash_id=world.hash_id)

    quality = report.checks["quality"]
    assert quality["status"] == ALERT
    assert quality["auc_drop"] > 0.05
    assert quality["live_auc"] == pytest.approx(0.5, abs=0.06)
    assert quality["calibration"]["status"] == ALERT  # 30% observed vs ~10% predicted
    points = {p.name: p.value for p in report.metric_points() if "feature" not in p.dimensions}
    assert points[names.METRIC_LIVE_QUALITY_ALERTS] == 1
    assert points[names.METRIC_LIVE_AUC] == quality["live_auc"]


# --- the command ----------------------------------------------------------------


@pytest.fixture
def environment(monkeypatch, world: World) -> None:
    settings = world.settings()
    for name, value in {
        "CREDIT_RISK_LOCAL_DIR": str(world.local_dir),
        names.ENV_LAKE_URI: world.lake,
        names.ENV_REGISTRY_URI: settings.registry,
        names.ENV_MODEL_NAME: MODEL_NAME,
        "CREDIT_RISK_ID_HASH_KEY": HASH_KEY,
        "CREDIT_RISK_MONITOR_MIN_SCORES": "200",
        "CREDIT_RISK_SKEW_SAMPLE_SIZE": "100",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (names.ENV_DATABASE_URL, "CREDIT_RISK_ID_HASH_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)


def test_the_command_writes_the_report_and_the_page_and_exits_0_when_nothing_alerts(
    world, store, environment, tmp_path, capsys
):
    world.write_log(world.traffic(store, world.customers(), PER_DAY))
    page = tmp_path / "report.html"

    code = cli.main(
        ["monitor", "--end", END.isoformat(), "--days", str(WINDOW_DAYS), "--html", str(page)]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    default_report = Path(world.lake) / "monitoring" / f"date={END}" / "report.json"
    report = json.loads(default_report.read_text())
    assert report["status"] != ALERT  # fairness may warn on the model's age bands
    assert report["checks"]["drift"]["status"] == OK
    assert report["window"] == {
        "start": (END - timedelta(days=WINDOW_DAYS - 1)).isoformat(),
        "end": END.isoformat(),
        "days": WINDOW_DAYS,
    }
    assert f"report: {default_report}" in out
    html = page.read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("data:image/png;base64,") == 2 + len(report["checks"]["drift"]["features"])
    assert "src='http" not in html  # self-contained: nothing fetched on opening


def test_the_command_exits_1_when_a_check_alerts(world, store, environment, tmp_path, capsys):
    world.write_log(world.traffic(store, world.customers(_older), PER_DAY))
    target = tmp_path / "out" / "report.json"

    code = cli.main(["monitor", "--end", END.isoformat(), "--report", str(target)])

    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(target.read_text())["checks"]["drift"]["status"] == ALERT
    assert "drift" in captured.err


def test_the_command_exits_2_when_there_is_nothing_to_monitor(
    environment, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv(names.ENV_REGISTRY_URI, str(tmp_path / "empty-registry"))

    code = cli.main(["monitor"])

    assert code == 2
    assert "no champion" in capsys.readouterr().err


def test_the_command_refuses_a_bad_date(environment, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["monitor", "--end", "yesterday"])
    assert exited.value.code == 2
    assert "not a date" in capsys.readouterr().err
