"""The inference image installs no SciPy, only its stand-in for xgboost's sparse-input
checks (``containers/inference/scipy-stub``): serving works the same with it.

A fresh interpreter gets the stand-in ahead of the dev environment's SciPy and cannot
import what the image does not install; it runs xgboost's dense paths (the ones
serving uses: ``inplace_predict``, a ``DMatrix`` from a float matrix, ``pred_contribs``)
and the handler on the sample events, and gives the same answers as this process,
which has the real SciPy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from credit_risk import names
from credit_risk.registry import MODEL_FILE
from tests.conftest import EVENTS_DIR
from tests.integration.api.conftest import MODEL_NAME, Configure, Serving, invoke, load_event

pytestmark = pytest.mark.postgres

ROOT = EVENTS_DIR.parents[1]
STUB = ROOT / "containers" / "inference" / "scipy-stub"
# What the image does not install (SciPy is shadowed by the stand-in, first on the path).
NOT_IN_THE_IMAGE = ("pyarrow", "pandas", "pyspark", "sklearn", "matplotlib", "aws_cdk", "flask")
EVENTS = ("inference_score", "inference_batch", "inference_health")
# Rows in the model's feature order, None for a missing value (NaN in float64).
ROWS = [
    [21.0, None, 0.0, None, 0.0],
    [45.0, 15.0, 3.0, 9000.0, 1.0],
    [67.0, None, 12.0, 2500.0, 0.0],
]
SCRIPT = """
import importlib.abc, json, sys

class NotInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, NotInTheImage())
sys.path[:0] = [{stub!r}, {root!r}]
import numpy as np
import xgboost as xgb
import scipy, scipy.sparse

booster = xgb.Booster(params={{"nthread": 1}})
booster.load_model(bytearray(open({model!r}, "rb").read()))
rows = np.array({rows!r}, dtype=np.float64)
margin = booster.inplace_predict(rows, predict_type="margin", missing=np.nan)
matrix = xgb.DMatrix(rows, missing=np.nan, feature_names=booster.feature_names, nthread=1)
contributions = booster.predict(matrix, pred_contribs=True)

from credit_risk.local_api import LambdaContext
from lambdas.inference import handler

answers = []
for name in {events!r}:
    event = json.loads(open(f"{events_dir}/{{name}}.json").read())
    response = handler.lambda_handler(event, LambdaContext(function_name="image"))
    answers.append([response["statusCode"], json.loads(response["body"])])
real_scipy = sorted(m for m in sys.modules if m.startswith("scipy.") and m != "scipy.sparse")
print(json.dumps({{
    "stub": getattr(scipy, "STUB", False),
    "real_scipy": real_scipy,
    "margin": margin.tolist(),
    "contributions": contributions.tolist(),
    "answers": answers,
}}), file=sys.stderr)
"""


@pytest.fixture
def handler(configure: Configure, features_url: str):
    return configure(**{names.ENV_DATABASE_URL: features_url})


def without_scipy(serving: Serving) -> dict:
    model = Path(serving.registry_uri) / MODEL_NAME / serving.version / MODEL_FILE
    script = SCRIPT.format(
        absent=NOT_IN_THE_IMAGE,
        stub=str(STUB),
        root=str(ROOT),
        model=str(model),
        rows=ROWS,
        events=EVENTS,
        events_dir=str(EVENTS_DIR),
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stderr.strip().splitlines()[-1])


def without_ids(body: dict) -> dict:
    """A score or batch answer without its decision ids."""
    if "results" in body:
        return {**body, "results": [without_ids(score) for score in body["results"]]}
    return {key: value for key, value in body.items() if key != "decision_id"}


def test_serving_gives_the_same_answers_without_scipy(handler, serving: Serving):
    # Given a fresh interpreter with the image's stand-in instead of SciPy
    result = without_scipy(serving)
    assert result["stub"] is True
    assert result["real_scipy"] == []
    # Then xgboost's dense paths give what they give here, with the real SciPy
    model = Path(serving.registry_uri) / MODEL_NAME / serving.version / MODEL_FILE
    booster = xgb.Booster(params={"nthread": 1})
    booster.load_model(bytearray(model.read_bytes()))
    rows = np.array(ROWS, dtype=np.float64)
    margin = booster.inplace_predict(rows, predict_type="margin", missing=np.nan)
    matrix = xgb.DMatrix(rows, missing=np.nan, feature_names=booster.feature_names, nthread=1)
    np.testing.assert_array_equal(result["margin"], margin)
    np.testing.assert_array_equal(
        result["contributions"], booster.predict(matrix, pred_contribs=True)
    )
    # And the handler answers the sample events as it does here
    for name, (status, body) in zip(EVENTS, result["answers"], strict=True):
        answer = invoke(handler, load_event(name))
        # (each answer is a decision of its own, under an id of its own)
        assert (status, without_ids(body)) == (answer.status, without_ids(answer.body)), name
        assert status == 200


def test_the_stand_in_refuses_sparse_input():
    # Given the stand-in, first on the path of a fresh interpreter
    code = (
        f"import sys; sys.path.insert(0, {str(STUB)!r})\n"
        "import numpy as np, xgboost as xgb, scipy.sparse\n"
        "try:\n"
        "    scipy.sparse.csr_matrix(np.eye(2))\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('refused:', exc.name)\n"
        "try:\n"
        "    import scipy.special\n"
        "except ModuleNotFoundError:\n"
        "    print('no scipy.special')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    # Then a sparse matrix cannot be made, and nothing else of SciPy is there
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["refused: scipy", "no scipy.special"]
