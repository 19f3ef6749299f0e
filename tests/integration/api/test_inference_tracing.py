"""Tracing of the inference Lambda: on in Lambda (active tracing), as Powertools and
the X-Ray SDK give it; off elsewhere, without loading the X-Ray SDK at all.

Each case runs the handler in a fresh interpreter: the Tracer's configuration and
the SDK's patches are process-wide.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from credit_risk import names
from tests.conftest import EVENTS_DIR
from tests.integration.api.conftest import Configure

pytestmark = pytest.mark.postgres

ROOT = EVENTS_DIR.parents[1]
SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from credit_risk.local_api import LambdaContext
from lambdas.inference import handler

sent = []
if "aws_xray_sdk.core" in sys.modules:
    from aws_xray_sdk.core import patcher, xray_recorder

    class Capture:
        def send_entity(self, entity):
            sent.append(json.loads(entity.serialize()))

        def set_daemon_address(self, address):
            pass

    xray_recorder.configure(emitter=Capture())
event = json.loads(open({event!r}).read())
response = handler.lambda_handler(event, LambdaContext(function_name="credit-risk-inference"))
print(json.dumps({{
    "status": response["statusCode"],
    "disabled": bool(handler.tracer.disabled),
    "xray_loaded": "aws_xray_sdk.core" in sys.modules,
    "patched": sorted(patcher._PATCHED_MODULES) if "patcher" in globals() else [],
    "sent": sent,
}}), file=sys.stderr)
"""
IN_LAMBDA = {
    "LAMBDA_TASK_ROOT": str(ROOT),
    "AWS_LAMBDA_FUNCTION_NAME": "credit-risk-inference",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "_X_AMZN_TRACE_ID": "Root=1-65f0a000-0123456789abcdef01234567;"
    "Parent=0123456789abcdef;Sampled=1",
}


@pytest.fixture
def handler(configure: Configure, features_url: str):
    return configure(**{names.ENV_DATABASE_URL: features_url})


def serve_score(extra_environment: dict[str, str]) -> dict:
    script = SCRIPT.format(root=str(ROOT), event=str(EVENTS_DIR / "inference_score.json"))
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in IN_LAMBDA and not name.startswith("POWERTOOLS_TRACE")
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**environment, **extra_environment},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_in_lambda_the_handler_is_traced_with_x_ray(handler):
    # When a cold function with active tracing answers a sampled request
    result = serve_score(IN_LAMBDA)
    assert result["status"] == 200
    assert result["disabled"] is False
    # Then the AWS SDK's calls (registry, secrets) are patched into the trace (X-Ray's
    # psycopg patch needs psycopg_pool, which is not installed: queries are not)
    assert "botocore" in result["patched"]
    # And the handler's subsegment carries the cold start and the service
    [subsegment] = [s for s in result["sent"] if s.get("name") == "## lambda_handler"]
    assert subsegment["annotations"] == {"ColdStart": True, "Service": names.SERVICE_INFERENCE}


def test_outside_lambda_tracing_is_off_and_x_ray_is_not_loaded(handler):
    # When the handler answers outside Lambda (the local server, the CLI, tests)
    result = serve_score({})
    # Then it answers untraced, without the X-Ray SDK's recorder
    assert result["status"] == 200
    assert result["disabled"] is True
    assert result["xray_loaded"] is False
