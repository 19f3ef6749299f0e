"""Fair lending in a training run: a model whose approvals follow gender through a
proxy is stopped by the gate, whatever its accuracy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from credit_risk.model import synthetic
from credit_risk.model.pipeline import TrainingConfig, run_training
from credit_risk.model.train import SearchConfig

MODEL = "credit-risk"


def _biased_by_proxy(loans: int, seed: int) -> pa.Table:
    """Training features where car ownership is a proxy for gender (nine in ten
    car owners are men, nine in ten others women) and not owning a car raises the
    risk far above the decision threshold: the model never sees gender, yet it
    declines women far more often."""
    table, truth = synthetic.training_features(loans, seed=seed)
    rng = np.random.default_rng(seed)
    car = table.column("flag_own_car").to_numpy() == 1
    proxy = np.where(rng.random(loans) < 0.9, car, ~car)
    gender = np.where(proxy, "M", "F")
    true_pd = truth.column("true_pd").to_numpy()
    logit = np.log(true_pd / (1 - true_pd)) + np.where(car, 0.0, 2.5)
    status = (rng.random(loans) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    table = table.set_column(
        table.schema.get_field_index("code_gender"), "code_gender", pa.array(gender)
    )
    return table.set_column(table.schema.get_field_index("status"), "status", pa.array(status))


def test_approvals_skewed_by_gender_through_a_proxy_fail_the_adverse_impact_check(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    pq.write_table(_biased_by_proxy(40_000, seed=5), folder / "part-00000.parquet")

    result = run_training(
        str(folder),
        str(tmp_path / "registry"),
        MODEL,
        config=TrainingConfig(search=SearchConfig(1)),
    )

    checks = {check.check: check for check in result.gate.checks}
    adverse = checks["adverse_impact gender"]
    assert adverse.outcome == "fail", adverse.message
    assert result.gate.outcome == "failed"
    gender = result.metadata["fairness"]["groupings"]["gender"]
    assert gender["most_favoured"] == "M"
    assert gender["groups"]["F"]["adverse_impact_ratio"]["estimate"] < 0.8
    # the model is accurate all the same: the gate stops it for its outcomes
    assert checks["baseline"].passed
    assert "F 0." in adverse.message
