"""`credit-risk pipeline run` end to end on small generated data, as a user runs it.

The run takes the steps of ``names.PIPELINE_STEPS`` in order and stops at the same
gates with the same messages as the state machine. Whether the model gate accepts a
model trained on 50,000 loans depends on the data (calibration on a small test
window), so the first test accepts either verdict and checks each one fully. Then
``simulate-traffic`` and ``credit-risk monitor`` run on what the pipeline left behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from credit_risk import names
from credit_risk.registry import Registry

pytestmark = pytest.mark.spark

LOANS = 50_000
AS_OF = "2024-01-01"
EXIT_STOPPED_BY_GATE = 3
# The installed command, as a user runs it.
CLI = Path(sys.executable).parent / "credit-risk"
STEP_LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+)$", re.MULTILINE)


def _cli(*args: str, local_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CREDIT_RISK_LOCAL_DIR": str(local_dir)}
    for name in ("CREDIT_RISK_DATABASE_URL", "CREDIT_RISK_LAKE_URI", "CREDIT_RISK_REGISTRY_URI"):
        env.pop(name, None)
    return subprocess.run(
        [str(CLI), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


@pytest.fixture(scope="module")
def raw_loans(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    output = folder / "loans.csv"
    generated = _cli(
        "generate-data",
        "--loans",
        str(LOANS),
        "--output",
        str(output),
        "--seed",
        "7",
        local_dir=folder,
    )
    assert generated.returncode == 0, generated.stderr
    return output


def _steps_announced(stderr: str) -> list[str]:
    return [match.group(3) for match in STEP_LINE.finditer(stderr)]


def _check_active_snapshot_recorded(local_dir: Path, run_id: str, summary: dict) -> None:
    """The store's load recorded what it serves beside the lake, as the feature-loader
    function does in AWS: a failover loads the same snapshot."""
    lake = local_dir / "lake"
    pointer = json.loads((lake / names.ACTIVE_SNAPSHOT_KEY).read_text())
    assert pointer["snapshot_id"] == run_id == summary["store"]["snapshot_id"]
    assert pointer["snapshot_uri"] == str(lake / "curated" / run_id / "snapshot")
    assert pointer["row_count"] == summary["store"]["row_count"]


@dataclass(frozen=True)
class CleanRun:
    run_id: str
    local_dir: Path
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def clean_run(raw_loans, tmp_path_factory) -> CleanRun:
    """One run with the default limits, shared: tests that change its output copy it."""
    run_id = "local-2024-01-01-e2e"
    local_dir = tmp_path_factory.mktemp("local")
    result = _cli(
        "pipeline",
        "run",
        "--input",
        str(raw_loans),
        "--as-of",
        AS_OF,
        "--run-id",
        run_id,
        local_dir=local_dir,
    )
    return CleanRun(run_id, local_dir, result)


def test_a_run_takes_the_state_machine_steps_in_order_to_a_verdict(clean_run):
    run_id, tmp_path, result = clean_run.run_id, clean_run.local_dir, clean_run.result

    assert result.returncode in (0, EXIT_STOPPED_BY_GATE), result.stderr
    announced = _steps_announced(result.stderr)
    for step, line in zip(names.PIPELINE_STEPS, announced, strict=False):
        assert line.startswith(step.replace("_", " ")), (step, line)
    report = json.loads(
        (tmp_path / "lake" / "curated" / run_id / names.QUALITY_REPORT_FILE).read_text()
    )
    assert report["run_id"] == run_id
    assert report["as_of"] == AS_OF
    summary = json.loads(result.stdout)
    registry = Registry(str(tmp_path / "registry"), names.PROJECT)
    if result.returncode == 0:
        # Every step ran; the new version is the champion and the store serves its run.
        assert len(announced) == len(names.PIPELINE_STEPS)
        assert registry.champion_version() == summary["champion"]
        _check_active_snapshot_recorded(tmp_path, run_id, summary)
    else:
        stopped = re.search(r"stopped at (\w+): (.+)$", result.stderr, re.MULTILINE)
        assert stopped, result.stderr
        step, message = stopped.groups()
        assert step in ("quality_gate", "model_gate")
        if step == "model_gate":
            # The message the state machine builds for the same verdict.
            failed = [r["message"] for r in summary["model"]["gate"]["reasons"] if not r["passed"]]
            version = summary["model"]["model_version"]
            assert message == names.MODEL_GATE_MESSAGE.format(
                version,
                summary["model"]["gate"]["outcome"],
                json.dumps(failed, separators=(",", ":")),
            )
            assert registry.champion_version() is None
            _check_active_snapshot_recorded(tmp_path, run_id, summary)
        else:
            assert report["quarantined_fraction"] > names.MAX_QUARANTINED_FRACTION
            assert not (tmp_path / "lake" / names.ACTIVE_SNAPSHOT_KEY).exists()


def test_the_quality_gate_stops_the_run_before_the_store_and_the_model(raw_loans, tmp_path):
    run_id = "local-2024-01-01-dq"
    limit = 0.0001  # below the generator's dirt rates

    result = _cli(
        "pipeline",
        "run",
        "--input",
        str(raw_loans),
        "--as-of",
        AS_OF,
        "--run-id",
        run_id,
        "--max-quarantined-fraction",
        str(limit),
        local_dir=tmp_path,
    )

    assert result.returncode == EXIT_STOPPED_BY_GATE, result.stderr
    report = json.loads(
        (tmp_path / "lake" / "curated" / run_id / names.QUALITY_REPORT_FILE).read_text()
    )
    expected = names.QUALITY_GATE_MESSAGE.format(
        float(report["quarantined_fraction"]), limit, report["outputs"]["quarantine"]
    )
    assert f"stopped at quality_gate: {expected}" in result.stderr
    assert len(_steps_announced(result.stderr)) == 2  # features, quality gate
    assert not (tmp_path / "feature_store.sqlite3").exists()
    assert not (tmp_path / "lake" / names.ACTIVE_SNAPSHOT_KEY).exists()
    assert not (tmp_path / "registry").exists()


def test_the_monitor_runs_on_the_pipeline_output_and_writes_its_report(clean_run, tmp_path):
    # given the run's local deployment, copied: a model the gate kept out is made the
    # champion by hand (``--force``), as one does to look at it
    local_dir = tmp_path / "local"
    shutil.copytree(clean_run.local_dir, local_dir)
    registry = Registry(str(local_dir / "registry"), names.PROJECT)
    if registry.champion_version() is None:
        version = json.loads(clean_run.result.stdout)["model"]["model_version"]
        promoted = _cli("registry", "promote", version, "--force", local_dir=local_dir)
        assert promoted.returncode == 0, promoted.stderr
    simulated = _cli("simulate-traffic", "--customers", "500", "--days", "3", local_dir=local_dir)
    assert simulated.returncode == 0, simulated.stderr
    page = tmp_path / "monitor.html"

    monitored = _cli("monitor", "--days", "3", "--html", str(page), local_dir=local_dir)

    # then the report judges the pipeline's own snapshot and model; only staleness
    # alerts, the snapshot being as of AS_OF
    assert monitored.returncode == 1, monitored.stderr
    (path,) = (local_dir / "lake" / "monitoring").glob("date=*/report.json")
    report = json.loads(path.read_text())
    checks = report["checks"]
    assert report["model"]["version"] == registry.champion_version()
    assert report["counts"]["scores"] == json.loads(simulated.stdout)["scores"] > 0
    assert checks["staleness"]["features"]["snapshot_id"] == clean_run.run_id
    assert checks["staleness"]["features"]["status"] == "alert"
    assert checks["skew"]["compared"] > 0
    assert checks["skew"]["mismatches"] == 0
    assert checks["drift"]["alerts"] == 0
    assert checks["quality"]["labelled"] > 0
    assert json.loads(monitored.stderr.splitlines()[-1].removeprefix("alerts: ")) == ["staleness"]
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 2
    assert "src='http" not in html
    assert 'src="http' not in html
