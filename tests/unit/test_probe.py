"""The probe's decisions that need no API: whether an answer may change and did,
what a run publishes, what it keeps, and the arguments it refuses."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from credit_risk import names, probe
from credit_risk.errors import InvalidInputError
from credit_risk.probe import Answer, Check, Comparison, ProbeResult
from lambdas.probe.handler import ProbeSettings

REPO_ROOT = Path(__file__).resolve().parents[2]

PREVIOUS = Answer(
    url="https://abc.execute-api.eu-west-1.amazonaws.com/api/",
    customer_id="1234567",
    default_probability=0.0421,
    decision="approve",
    threshold=0.2,
    reason_codes=(),
    model_version="20260101T000000Z",
    features_as_of="2026-01-01",
    snapshot_id="2026-01-01-20260101T030000Z",
    checked_at="2026-01-02T10:00:00+00:00",
)


def later(**changes) -> Answer:
    return dataclasses.replace(PREVIOUS, checked_at="2026-01-02T10:05:00+00:00", **changes)


def test_the_first_answer_has_nothing_to_be_compared_with():
    assert probe.compare_answers(None, PREVIOUS).status == probe.FIRST


def test_the_same_answer_on_the_same_model_and_snapshot_is_unchanged():
    comparison = probe.compare_answers(PREVIOUS, later())

    assert comparison == Comparison(
        probe.UNCHANGED, f"same answer as first seen at {PREVIOUS.checked_at}"
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"default_probability": 0.31}, "default_probability 0.0421 -> 0.31"),
        ({"decision": "decline"}, "decision approve -> decline"),
        ({"threshold": 0.25}, "threshold 0.2 -> 0.25"),
        ({"reason_codes": ("MANY_PREVIOUS_LOANS",)}, "reason_codes () -> ('MANY_PREVIOUS_LOANS',)"),
    ],
)
def test_any_other_answer_on_the_same_model_and_snapshot_is_a_change(change, named):
    comparison = probe.compare_answers(PREVIOUS, later(**change))

    assert comparison.status == probe.CHANGED
    assert comparison.detail == (
        f"the answer changed with the same model {PREVIOUS.model_version} and snapshot "
        f"{PREVIOUS.snapshot_id}: {named}"
    )


def test_float_noise_below_the_tolerance_is_the_same_answer():
    noise = PREVIOUS.default_probability + probe.PROBABILITY_TOLERANCE / 2

    assert probe.compare_answers(PREVIOUS, later(default_probability=noise)).status == (
        probe.UNCHANGED
    )


@pytest.mark.parametrize(
    "moved",
    [
        {"model_version": "20260201T000000Z"},  # a promotion, or a canary's candidate
        {"features_as_of": "2026-02-01"},
        {"snapshot_id": "2026-01-01-20260105T030000Z"},  # a reload of the same date
        {"customer_id": "7654321"},
        {"url": "http://127.0.0.1:8080"},
    ],
)
def test_a_release_or_new_data_explains_any_change(moved):
    current = later(default_probability=0.9, decision="decline", **moved)

    comparison = probe.compare_answers(PREVIOUS, current)

    assert comparison.status == probe.EXPLAINED
    assert comparison.detail.startswith("not compared, a release or new data:")


def test_a_snapshot_the_health_call_could_not_tell_is_no_release():
    # health failed (no snapshot id), the score still came from the same data
    current = later(snapshot_id=None, default_probability=0.5)

    assert probe.compare_answers(PREVIOUS, current).status == probe.CHANGED


def test_a_kept_answer_reads_back_as_it_was_written():
    assert Answer.from_json(PREVIOUS.to_json(), "state") == PREVIOUS


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[]", json.dumps({"customer_id": "1234567"}).encode()],
)
def test_anything_else_is_refused_as_state(data):
    with pytest.raises(probe.UnreadableStateError, match=r"^kept\.json does not hold"):
        Answer.from_json(data, "kept.json")


def _result(*, ok: bool, comparison: Comparison | None) -> ProbeResult:
    return ProbeResult(
        url=PREVIOUS.url,
        customer_id=PREVIOUS.customer_id,
        checks=(
            Check(probe.HEALTH, True, "fine", 200, 12.5),
            Check(probe.SCORE, ok, "fine" if ok else "answered 500", 200 if ok else 500, 40.0),
        ),
        answer=PREVIOUS if ok else None,
        comparison=comparison,
    )


def test_a_run_publishes_its_failure_count_its_change_and_each_latency():
    changed = _result(ok=True, comparison=Comparison(probe.CHANGED, "..."))
    failed = _result(ok=False, comparison=None)
    first = _result(ok=True, comparison=Comparison(probe.FIRST, "..."))

    assert changed.metric_points() == [
        (names.METRIC_PROBE_FAILURES, 0.0, "Count"),
        (names.METRIC_PROBE_ANSWER_CHANGED, 1.0, "Count"),
        (names.METRIC_PROBE_HEALTH_LATENCY, 12.5, "Milliseconds"),
        (names.METRIC_PROBE_SCORE_LATENCY, 40.0, "Milliseconds"),
    ]
    # no answer, or nothing to compare with: no change is published, not even a 0
    assert failed.metric_points() == [
        (names.METRIC_PROBE_FAILURES, 1.0, "Count"),
        (names.METRIC_PROBE_HEALTH_LATENCY, 12.5, "Milliseconds"),
        (names.METRIC_PROBE_SCORE_LATENCY, 40.0, "Milliseconds"),
    ]
    assert names.METRIC_PROBE_ANSWER_CHANGED not in [n for n, _, _ in first.metric_points()]


@pytest.mark.parametrize("url", ["", "localhost:8080", "ftp://host/", "http://"])
def test_a_url_that_is_no_http_url_is_refused(url):
    with pytest.raises(InvalidInputError, match="not an http"):
        probe.run_probe(url, None, "1234567")


@pytest.mark.parametrize("customer_id", ["", "a b", "5008804' OR '1'='1", "9" * 65])
def test_an_id_the_api_would_refuse_is_refused_before_any_call(customer_id):
    with pytest.raises(InvalidInputError, match="customer id"):
        probe.run_probe("http://127.0.0.1:9", None, customer_id)


def test_the_functions_settings_are_the_variables_the_stack_sets():
    prefix = ProbeSettings.model_config["env_prefix"]

    assert {prefix + field.upper() for field in ProbeSettings.model_fields} == {
        names.ENV_PROBE_URL,
        names.ENV_PROBE_API_KEY_SECRET_ID,
        names.ENV_PROBE_CUSTOMER_ID,
        names.ENV_PROBE_TIMEOUT_SECONDS,
        names.ENV_PROBE_STATE_URI,
    }


def test_the_handler_imports_nothing_the_inference_image_leaves_out():
    # The probe function runs the inference image, which has no pyarrow and no SciPy.
    code = (
        "import sys; sys.modules.update(pyarrow=None, scipy=None); "
        "import lambdas.probe.handler; print('imported')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )

    assert result.stdout.strip() == "imported", result.stderr
