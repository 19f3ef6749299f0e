"""Fixtures of the model and registry tests: a small real model, an S3 bucket in moto."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from credit_risk.model import synthetic
from credit_risk.model.data import split_out_of_time, to_dataset
from credit_risk.model.train import Hyperparameters, train_model
from tests.conftest import use_fake_aws_credentials

BUCKET = "registry-bucket"


@pytest.fixture(scope="session")
def model_bytes() -> bytes:
    """A real (small) XGBoost model file."""
    table, _ = synthetic.training_features(5_000, seed=1)
    split = split_out_of_time(to_dataset(table))
    params = Hyperparameters(num_boost_round=10, early_stopping_rounds=5)
    return train_model(split.train, split.validation, params).model_bytes()


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    """moto's in-memory AWS, with fake credentials so nothing reaches a real account."""
    use_fake_aws_credentials(monkeypatch, "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def bucket(aws) -> str:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return BUCKET
