"""The shared names module: light to import, consistent with Settings."""

from __future__ import annotations

import subprocess
import sys

from credit_risk import names
from credit_risk.settings import ENV_PREFIX, Settings


def test_importing_names_pulls_in_nothing_heavy():
    code = (
        "import sys, credit_risk.names; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'boto3', 'aws_cdk', 'pyarrow', 'numpy')]; "
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "[]"


def test_settings_variables_are_named_after_settings_fields():
    assert names.ENV_PREFIX == ENV_PREFIX
    for variable in (
        names.ENV_LAKE_URI,
        names.ENV_REGISTRY_URI,
        names.ENV_DATABASE_URL,
        names.ENV_MODEL_NAME,
    ):
        field = variable.removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, variable


def test_candidate_alarms_share_a_prefix_the_live_ones_do_not_match():
    prefix = names.candidate_alarm_prefix("prod")

    assert f"{names.resource_name('prod', 'inference', 'candidate')}-errors".startswith(prefix)
    assert not f"{names.resource_name('prod', 'inference', 'live')}-errors".startswith(prefix)
