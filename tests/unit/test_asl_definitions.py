"""Static checks of the state machine definitions in step_functions/.

They parse; every transition names an existing state and every state is reachable;
every Task retries and catches; every placeholder has a value in the orchestration
stack; and the training pipeline takes the steps of ``names.PIPELINE_STEPS`` in that
order, like the local runner, with the same quality limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from credit_risk import names, pipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = sorted((REPO_ROOT / "step_functions").glob("*.asl.json"))
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_]*)\}")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _transitions(state: dict[str, Any]) -> list[str]:
    targets = [state.get("Next"), state.get("Default")]
    targets += [choice["Next"] for choice in state.get("Choices", [])]
    targets += [catcher["Next"] for catcher in state.get("Catch", [])]
    return [t for t in targets if t]


def _pascal(step: str) -> str:
    return "".join(part.capitalize() for part in step.split("_"))


def test_every_definition_exists():
    assert {p.name for p in DEFINITIONS} == {
        "training_pipeline.asl.json",
        "canary_release.asl.json",
        "batch_scoring.asl.json",
    }


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.stem)
def test_every_transition_names_a_state_and_every_state_is_reachable(path):
    definition = _load(path)
    states = definition["States"]

    dangling = {
        (name, target)
        for name, state in states.items()
        for target in _transitions(state)
        if target not in states
    }
    seen, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _transitions(states[name])

    assert not dangling
    assert seen == set(states)
    for name, state in states.items():
        ends = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert ends or "Next" in state or state["Type"] == "Choice", name


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.stem)
def test_every_task_retries_transient_errors_and_catches_everything(path):
    for name, state in _load(path)["States"].items():
        if state["Type"] != "Task":
            continue
        retriers = state.get("Retry", [])
        assert retriers, f"{name} has no Retry"
        for retrier in retriers:
            assert "States.ALL" not in retrier["ErrorEquals"], name
            assert retrier["MaxAttempts"] >= 1, name
            assert retrier["BackoffRate"] >= 1, name
        catchers = state.get("Catch", [])
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in catchers), f"{name} catches less"


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.stem)
def test_every_catch_leads_to_the_one_failure_path(path):
    states = _load(path)["States"]
    catch_targets = {c["Next"] for s in states.values() for c in s.get("Catch", [])}
    # The failure notification catches into the terminal description of the failure;
    # a release that fails before it changed anything says so (NotifyNotStarted); one
    # that fails once its record may be open closes it (ErrorDuringRelease); a report
    # that cannot be written leaves the notification without its link.
    allowed = {
        "NotifyFailure",
        "DescribeFailure",
        "ErrorDuringRelease",
        "NotifyNotStarted",
        "NoPromotionReport",
        "NoRollbackReport",
    }
    assert catch_targets <= allowed
    assert "NotifyFailure" in catch_targets


@pytest.mark.parametrize("path", DEFINITIONS, ids=lambda p: p.stem)
def test_every_placeholder_has_a_value_in_the_orchestration_stack(path):
    from infra.config import load_config
    from infra.stacks.orchestration import RESOURCE_SUBSTITUTIONS, configured_substitutions

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    used = set(PLACEHOLDER.findall(path.read_text(encoding="utf-8")))
    for environment in names.ENVIRONMENTS:
        provided = set(configured_substitutions(load_config(context, environment)))
        assert not used - (provided | RESOURCE_SUBSTITUTIONS), environment
        assert not provided & RESOURCE_SUBSTITUTIONS


def _paths_to_success(states: dict[str, Any], start: str) -> list[list[str]]:
    """Every path from ``start`` to a Succeed state (or End), ignoring Catch."""
    paths, todo = [], [[start]]
    while todo:
        path = todo.pop()
        state = states[path[-1]]
        if state["Type"] == "Succeed" or state.get("End") is True:
            paths.append(path)
            continue
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])]
        todo += [[*path, t] for t in targets if t and t not in path and t in states]
    return paths


def test_the_training_pipeline_takes_the_shared_steps_in_order():
    definition = _load(REPO_ROOT / "step_functions" / "training_pipeline.asl.json")
    expected = [_pascal(step) for step in names.PIPELINE_STEPS]

    paths = _paths_to_success(definition["States"], definition["StartAt"])
    admitted = [path for path in paths if "Admit" in path and expected[0] in path]
    skipped = [path for path in paths if expected[0] not in path]

    assert admitted
    for path in admitted:
        assert [name for name in path if name in expected] == expected
        assert path.index("Admission") < path.index(expected[0])
    # The only success without the steps: a run skipped at admission, touching nothing.
    assert all(path[-2:] == ["NotifySkipped", "Skipped"] for path in skipped)
    assert pipeline.STEPS == names.PIPELINE_STEPS


RELEASE = REPO_ROOT / "step_functions" / "canary_release.asl.json"


def _payload_action(state: dict[str, Any]) -> str | None:
    return state.get("Parameters", {}).get("Payload", {}).get("action")


def _paths_from(states: dict[str, Any], start: str, until: str) -> list[list[str]]:
    """Every path from ``start`` to ``until`` (Next, Default, Choices; no Catch)."""
    found, todo = [], [[start]]
    while todo:
        path = todo.pop()
        if path[-1] == until:
            found.append(path)
            continue
        state = states[path[-1]]
        targets = [state.get("Next"), state.get("Default")]
        targets += [c["Next"] for c in state.get("Choices", [])]
        todo += [[*path, t] for t in targets if t and t not in path]
    return found


def _reachable(states: dict[str, Any], start: str) -> set[str]:
    """``start`` and the states its transitions lead to (Next, Default, Choices)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        state = states[name]
        todo += [t for t in (state.get("Next"), state.get("Default")) if t]
        todo += [c["Next"] for c in state.get("Choices", [])]
    return seen


def test_a_release_that_may_have_opened_closes_its_record_whatever_fails():
    states = _load(RELEASE)["States"]
    from_open = _reachable(states, "OpenRelease")
    opened_to_promotion = {
        name
        for name in from_open
        if states[name]["Type"] == "Task" and "Promote" in _reachable(states, name)
    }

    assert opened_to_promotion == {
        "OpenRelease",
        "Decide",
        "MoveRelease",
        "CheckRelease",
        "Judge",
        "FullTraffic",
        "Promote",
    }
    for name in opened_to_promotion:
        catch_all = [c for c in states[name]["Catch"] if c["ErrorEquals"] == ["States.ALL"]]
        assert catch_all[0]["Next"] == "ErrorDuringRelease", name
    # Only the refusals that change nothing skip the close.
    (refusal,) = [c for c in states["OpenRelease"]["Catch"] if c["Next"] == "NotifyNotStarted"]
    assert set(refusal["ErrorEquals"]) == {
        "InvalidInputError",
        "ModelNotFoundError",
        "ConcurrentUpdateError",
    }
    assert [
        name for path in _paths_from(states, "ErrorDuringRelease", "RolledBack") for name in path
    ] == [
        "ErrorDuringRelease",
        "CloseRelease",
        "ReportRollback",
        "NotifyRolledBack",
        "RolledBack",
    ]


def test_the_champion_changes_only_once_every_customer_is_on_the_candidate():
    states = _load(RELEASE)["States"]

    for path in _paths_from(states, "Defaults", "Promote"):
        assert path[-4:] == ["Follow", "FullTraffic", "WaitForRefresh", "Promote"], path
    full = states["FullTraffic"]["Parameters"]["Payload"]
    assert (full["action"], full["stage"], full["percent"]) == ("move_release", "canary", 100)
    assert states["WaitForRefresh"]["SecondsPath"] == "$.release.live_refresh_seconds"
    assert _payload_action(states["Promote"]) == "promote"


def test_a_rollback_on_request_is_one_write_then_one_refresh_with_no_traffic_minimum():
    from infra.config import load_config
    from infra.stacks.orchestration import configured_substitutions

    states = _load(RELEASE)["States"]
    (path,) = _paths_from(states, "Defaults", "RollbackDone")
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]

    assert [_payload_action(states[name]) for name in path if states[name]["Type"] == "Task"] == [
        "roll_back",
        "confirm_live",
        None,  # the notification
    ]
    waits = [name for name in path if states[name]["Type"] == "Wait"]
    assert waits == ["WaitForRollback"]
    assert states["WaitForRollback"]["SecondsPath"] == "$.release.live_refresh_seconds"
    assert "Admit" not in path
    for environment in names.ENVIRONMENTS:
        refresh = configured_substitutions(load_config(context, environment))["LiveRefreshSeconds"]
        assert int(refresh) < 60, "a rollback reaches every customer within a minute"


def test_the_release_observes_shadow_and_each_step_for_their_own_time():
    states = _load(RELEASE)["States"]

    assert states["ObserveShadow"]["SecondsPath"] == "$.release.canary.shadow_seconds"
    assert states["ObserveStep"]["SecondsPath"] == "$.release.canary.wait_seconds"
    (shadow,) = states["Observe"]["Choices"]
    assert (shadow["StringEquals"], shadow["Next"]) == ("shadow", "ObserveShadow")
    assert states["Observe"]["Default"] == "ObserveStep"
    assert states["ObserveShadow"]["Next"] == states["ObserveStep"]["Next"] == "WaitForMetrics"


def test_every_check_waits_for_the_metrics_of_the_stages_last_minutes():
    from infra.config import load_config
    from infra.stacks.orchestration import configured_substitutions

    states = _load(RELEASE)["States"]
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]

    into_check = {
        name
        for name, state in states.items()
        if "CheckRelease" in (state.get("Next"), state.get("Default"))
        or "CheckRelease" in [c["Next"] for c in state.get("Choices", [])]
    }
    assert into_check == {"WaitForMetrics"}
    assert states["WaitForMetrics"]["Type"] == "Wait"
    assert states["WaitForMetrics"]["SecondsPath"] == "$.release.metric_lag_seconds"
    # The default is the shared constant, and the release checks an input's value
    # before it opens, as it does the other waits.
    defaults = states["Defaults"]["Parameters"]
    assert defaults["metric_lag_seconds.$"] == "States.StringToJson('${MetricLagSeconds}')"
    for environment in names.ENVIRONMENTS:
        values = configured_substitutions(load_config(context, environment))
        assert json.loads(values["MetricLagSeconds"]) == names.METRIC_LAG_SECONDS
    opening = states["OpenRelease"]["Parameters"]["Payload"]
    assert opening["metric_lag_seconds.$"] == "$.release.metric_lag_seconds"
    # A later canary step's evidence depends on which step it is.
    checking = states["CheckRelease"]["Parameters"]["Payload"]
    assert checking["step_index.$"] == "$.verdict.step_index"


def _retries_client_errors(state: dict[str, Any]) -> dict[str, Any] | None:
    found = [r for r in state.get("Retry", []) if "ClientError" in r["ErrorEquals"]]
    return found[0] if found else None


# Actions whose retry changes nothing a first attempt did: reads, writes of the
# same record or report, and closes of a record already closed.
IDEMPOTENT_ACTIONS = {
    "admit_release",
    "move_release",
    "check_release",
    "judge",
    "report",
    "close_release",
    "confirm_live",
}


def test_service_errors_of_the_idempotent_actions_are_retried_with_backoff():
    states = _load(RELEASE)["States"]
    tasks = {
        name: _payload_action(state)
        for name, state in states.items()
        if state["Type"] == "Task" and _payload_action(state)
    }

    retried = {name for name in tasks if _retries_client_errors(states[name])}

    assert {tasks[name] for name in retried} == IDEMPOTENT_ACTIONS
    assert retried == {name for name, action in tasks.items() if action in IDEMPOTENT_ACTIONS}
    # Opening, promoting and rolling back are not retried on a service error: their
    # failure takes the close path, which ends the release (and undoes a promotion
    # left half done) rather than repeat a write.
    assert {"OpenRelease", "Promote", "RollBack"} <= set(tasks) - retried
    for name in retried:
        retrier = _retries_client_errors(states[name])
        assert retrier["ErrorEquals"] == ["ClientError"], name
        assert retrier["MaxAttempts"] >= 3, name
        assert retrier["BackoffRate"] > 1, name
        assert retrier["IntervalSeconds"] >= 1, name
        assert retrier["JitterStrategy"] == "FULL", name
        # Lambda's own errors are still retried first, as before.
        assert states[name]["Retry"][0]["ErrorEquals"][0].startswith("Lambda."), name
        # At most a few minutes in all: a stage is not held up for long.
        waits = sum(
            min(
                retrier["IntervalSeconds"] * retrier["BackoffRate"] ** attempt,
                retrier.get("MaxDelaySeconds", float("inf")),
            )
            for attempt in range(retrier["MaxAttempts"])
        )
        assert waits <= 180, name


def test_the_release_takes_every_model_release_setting_with_its_default():
    from infra.config import load_config

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    defaults = _load(RELEASE)["States"]["Defaults"]["Parameters"]["canary"]

    settings = load_config(context, "dev").model_release.settings()
    assert {key.removesuffix(".$") for key in defaults} == set(settings)


def test_the_quality_gate_uses_the_shared_limit_and_report():
    from infra.stacks.orchestration import OrchestrationStack, configured_substitutions

    text = (REPO_ROOT / "step_functions" / "training_pipeline.asl.json").read_text()
    definition = json.loads(text)
    gate = definition["States"]["QualityGate"]["Choices"][0]
    defaults = definition["States"]["Defaults"]["Parameters"]
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    from infra.config import load_config

    config = load_config(context, "dev")

    assert gate["Variable"] == "$.quality.report.quarantined_fraction"
    assert gate["NumericGreaterThanPath"] == "$.run.max_quarantined_fraction"
    assert defaults["max_quarantined_fraction.$"] == (
        "States.StringToJson('${MaxQuarantinedFraction}')"
    )
    assert json.loads(configured_substitutions(config)["MaxQuarantinedFraction"]) == (
        names.MAX_QUARANTINED_FRACTION
    )
    assert OrchestrationStack.execution_defaults(config)["max_quarantined_fraction"] == (
        names.MAX_QUARANTINED_FRACTION
    )
    assert pipeline.DEFAULT_MAX_QUARANTINED_FRACTION == names.MAX_QUARANTINED_FRACTION
    assert "${QualityReportFile}" in text


def test_the_report_file_is_the_one_the_feature_job_writes():
    from credit_risk.features import quality

    assert names.QUALITY_REPORT_FILE == quality.REPORT_FILE


def test_gate_messages_can_be_inlined_into_an_intrinsic_function():
    for message in (names.QUALITY_GATE_MESSAGE, names.MODEL_GATE_MESSAGE):
        assert not set("'\"\\") & set(message)
        assert "{}" in message


def test_the_feature_task_passes_the_arguments_the_glue_entrypoint_reads():
    from infra.config import load_config
    from infra.stacks.orchestration import configured_substitutions
    from tests.script_modules import load_glue_script

    entrypoint = load_glue_script("feature_extraction.py")
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    values = configured_substitutions(load_config(context, "dev"))
    task = _load(REPO_ROOT / "step_functions" / "training_pipeline.asl.json")["States"]["Features"]

    passed = {
        PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), key).removesuffix(".$")
        for key in task["Parameters"]["Arguments"]
    }

    assert passed == {f"--{name}" for name in (*entrypoint.REQUIRED, *entrypoint.OPTIONAL)}


def test_a_load_whose_pointer_was_not_written_is_retried():
    # The store switch committed; a retry is a no-op for it and writes the pointer.
    from credit_risk.active_snapshot import PointerNotRecorded

    states = _load(REPO_ROOT / "step_functions" / "training_pipeline.asl.json")["States"]
    retried = [
        r
        for r in states["LoadFeatures"]["Retry"]
        if PointerNotRecorded.__name__ in r["ErrorEquals"]
    ]
    assert len(retried) == 1
    assert retried[0]["MaxAttempts"] >= 2
