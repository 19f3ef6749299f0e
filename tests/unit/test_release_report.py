"""The release report: stages as they are judged, the swap sample from the scoring
log's served and shadow records, and a page that needs nothing but itself."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser

import pytest

from credit_risk import release_decision, release_report
from credit_risk.monitoring.records import SERVED, SHADOW, ScoreRecord
from credit_risk.registry import Registry
from credit_risk.release_metrics import Decided, ReleaseCounts

CHAMPION, CANDIDATE = "20260101T000000Z-aaaaaaaa", "20260201T000000Z-bbbbbbbb"


@pytest.fixture
def registry(tmp_path) -> Registry:
    registry = Registry(str(tmp_path / "registry"), "credit-risk")
    for version in (CHAMPION, CANDIDATE):
        registry.publish(version, version.encode(), {"gate": {"passed": True}})
    registry.promote(CHAMPION)
    return registry


def record(request: str, customer: str, version: str, role: str, decision: str, p: float):
    return ScoreRecord(
        request_id=request,
        customer_hash=customer,
        model_version=version,
        snapshot_id="snap",
        features_as_of=date(2026, 11, 30),
        features={},
        default_probability=p,
        decision=decision,
        scored_at=datetime(2026, 12, 1, tzinfo=UTC),
        environment="test",
        role=role,
        release_id="rel-1",
        reasons=("DEBT_TO_INCOME",) if decision == "decline" else (),
    )


def counts(pairs: int, flips: int) -> ReleaseCounts:
    same = [(Decided(0.011, "approve"), Decided(0.012, "approve"))] * (pairs - flips)
    flipped = [(Decided(0.04, "approve"), Decided(0.045, "decline"))] * flips
    return ReleaseCounts.observe(same + flipped, champion_ms=0.3, candidate_ms=0.4)


def test_stages_are_kept_in_order_and_a_retried_judgement_replaces_its_own(registry):
    state = registry.open_release("rel-1", CANDIDATE)
    policy = release_decision.CanaryPolicy(steps_percent=(10.0,), min_requests=1)
    check = release_decision.StepCheck(requests=50, counts=counts(50, 1))
    verdict = release_decision.decide(
        model_version=CANDIDATE, champion=CHAMPION, policy=policy, stage="shadow", check=check
    )
    release_report.record_stage(
        registry, state, stage="shadow", percent=0.0, check=check, verdict=verdict
    )
    # The same stage judged again (a retried action), then a step given as the AWS
    # release passes it: dicts, with the counts as metric sums.
    release_report.record_stage(
        registry, state, stage="shadow", percent=0.0, check=check, verdict=verdict
    )
    entries = release_report.record_stage(
        registry,
        state,
        stage="canary",
        percent=10.0,
        check={"alarms": ["x-candidate-errors"], "requests": 7, "counts": counts(80, 2).metrics()},
        verdict={"action": "roll_back", "reason": "alarm", "gates": []},
    )
    assert [(e["stage"], e["percent"]) for e in entries] == [("shadow", 0.0), ("canary", 10.0)]
    assert entries[0]["verdict"]["action"] == "canary"
    assert {g["gate"] for g in entries[0]["verdict"]["gates"]} >= {"approval_rate", "swap_set"}
    assert entries[1]["counts"]["pairs"] == 80
    assert entries[1]["alarms"] == ["x-candidate-errors"]
    assert release_report.stages(registry, state) == entries


def test_the_finished_report_holds_the_swap_set_from_served_and_shadow_records(registry):
    state = registry.open_release("rel-1", CANDIDATE)
    check = release_decision.StepCheck(requests=3, counts=counts(3, 2))
    verdict = release_decision.Verdict("roll_back", "swap share too high")
    release_report.record_stage(
        registry, state, stage="shadow", percent=0.0, check=check, verdict=verdict
    )
    records = [
        # a flip in shadow: the champion answered
        record("r1", "c1", CHAMPION, SERVED, "approve", 0.04),
        record("r1", "c1", CANDIDATE, SHADOW, "decline", 0.2),
        # a flip in a canary step: the candidate answered
        record("r2", "c2", CANDIDATE, SERVED, "decline", 0.3),
        record("r2", "c2", CHAMPION, SHADOW, "approve", 0.03),
        # no flip
        record("r3", "c3", CHAMPION, SERVED, "approve", 0.01),
        record("r3", "c3", CANDIDATE, SHADOW, "approve", 0.01),
    ]
    state = registry.close_release("rel-1", "rolled_back", "swap share too high")
    uris = release_report.finish(
        registry, state, outcome="rolled_back", reason="swap share too high", records=records
    )
    report = json.loads(registry.read_report(CANDIDATE, "rel-1", release_report.JSON_FILE))
    assert uris["report_json"].endswith(f"{CANDIDATE}/releases/rel-1/report.json")
    assert report["outcome"] == "rolled_back"
    assert report["totals"]["swaps_to_decline"] == 2
    sample = {item["customer_hash"]: item for item in report["swap_sample"]}
    assert set(sample) == {"c1", "c2"}
    assert sample["c1"]["answered_by"] == "champion"
    assert sample["c2"]["answered_by"] == "candidate"
    assert sample["c2"]["candidate"]["reasons"] == ["DEBT_TO_INCOME"]


def test_a_stream_of_answers_gives_the_first_flipped_customers_and_stops(registry):
    # given answers as the scoring log holds them: each request's pair side by side,
    # another release's answers among them, and more flips than the sample takes
    state = registry.open_release("rel-1", CANDIDATE)
    other = record("x1", "c0", CANDIDATE, SHADOW, "decline", 0.3)
    answers = [replace(other, release_id="rel-2")]
    for n in range(5):
        answers += [
            record(f"r{n}", f"c{n}", CHAMPION, SERVED, "approve", 0.01),
            record(f"r{n}", f"c{n}", CANDIDATE, SHADOW, "decline" if n % 2 else "approve", 0.2),
        ]
    read = []

    def stream():
        for answer in answers:
            read.append(answer)
            yield answer

    # when the first two flipped customers are asked for
    found = release_report.flipped_records(stream(), state, size=2)

    # then it gives their four answers, and reads no further than the second flip
    assert {(r.customer_hash, r.model_version) for r in found} == {
        ("c1", CHAMPION),
        ("c1", CANDIDATE),
        ("c3", CHAMPION),
        ("c3", CANDIDATE),
    }
    assert read == answers[:-2]
    assert [item["customer_hash"] for item in release_report.swap_sample(found, state)] == [
        "c1",
        "c3",
    ]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.external.append(value)


def test_the_page_is_self_contained_and_escapes_what_it_quotes(registry):
    state = registry.open_release("rel-1", CANDIDATE)
    check = release_decision.StepCheck(requests=3, counts=counts(40, 3))
    verdict = release_decision.Verdict("roll_back", "<script>alert(1)</script>")
    release_report.record_stage(
        registry, state, stage="shadow", percent=0.0, check=check, verdict=verdict
    )
    release_report.finish(registry, state, outcome="rolled_back", reason="<b>bad</b>")
    page = registry.read_report(CANDIDATE, "rel-1", release_report.HTML_FILE).decode()
    parser = _Page()
    parser.feed(page)
    assert "script" not in parser.tags
    assert parser.external == []
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert "svg" in parser.tags  # the score distributions
