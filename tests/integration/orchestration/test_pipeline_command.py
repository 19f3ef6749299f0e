"""`credit-risk pipeline run` refuses bad input with one readable line and exit 2,
before Spark starts and before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from credit_risk import cli, names


@pytest.fixture
def local_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CREDIT_RISK_LOCAL_DIR", str(tmp_path))
    for name in (names.ENV_DATABASE_URL, names.ENV_LAKE_URI, names.ENV_REGISTRY_URI):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Runs the command; returns its error line after checking exit 2 and no trace."""
    try:
        code = cli.main(["pipeline", "run", *args])
    except SystemExit as exited:  # argparse refuses its own arguments this way
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "many"])
def test_a_quality_limit_that_is_not_a_fraction_is_refused(local_dir, capsys, value):
    err = _refused(capsys, "--max-quarantined-fraction", value)
    assert f"a fraction from 0 to 1, got '{value}'" in err


@pytest.mark.parametrize("value", ["2024-13-01", "yesterday", "2024-01-01T00:00"])
def test_a_run_date_that_is_not_a_calendar_date_is_refused(local_dir, capsys, value):
    err = _refused(capsys, "--as-of", value)
    assert "as-of must be a calendar date written YYYY-MM-DD" in err


def test_a_run_id_that_cannot_name_a_folder_is_refused(local_dir, capsys):
    err = _refused(capsys, "--as-of", "2024-01-01", "--run-id", "../elsewhere")
    assert "run id must be" in err


def test_a_missing_input_is_refused_before_any_step(local_dir, capsys):
    missing = local_dir / "no-such-loans.csv"

    err = _refused(capsys, "--input", str(missing), "--as-of", "2024-01-01")

    assert f"no such file or folder: {missing}" in err
    assert "[1/" not in err  # no step announced: Spark never started
    assert list(local_dir.iterdir()) == []


def test_an_input_without_the_raw_columns_is_refused_before_any_step(local_dir, capsys):
    wrong = local_dir / "customers.csv"
    wrong.write_text("customer,score\n1,0.5\n")

    err = _refused(capsys, "--input", str(wrong), "--as-of", "2024-01-01")

    assert "does not have the raw loan columns" in err
    assert "[1/" not in err
    assert sorted(p.name for p in local_dir.iterdir()) == ["customers.csv"]
