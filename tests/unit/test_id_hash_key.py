"""Where the key of the customer-id hash comes from (serving.service.hash_key)."""

from __future__ import annotations

import stat

from credit_risk.serving.service import LOCAL_HASH_KEY_FILE, IdHasher, InferenceSettings, hash_key


def test_a_configured_key_wins(tmp_path):
    settings = InferenceSettings(local_dir=tmp_path, id_hash_key="configured")

    assert hash_key(settings) == b"configured"
    assert not (tmp_path / LOCAL_HASH_KEY_FILE).exists()


def test_off_lambda_every_process_shares_one_owner_only_local_key(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    settings = InferenceSettings(local_dir=tmp_path / "fresh")

    first, second = hash_key(settings), hash_key(InferenceSettings(local_dir=tmp_path / "fresh"))

    assert first == second
    assert len(first) == 64
    path = tmp_path / "fresh" / LOCAL_HASH_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert IdHasher(first)("5008804") == IdHasher(second)("5008804")


def test_in_lambda_without_a_key_there_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "credit-risk-dev-inference")

    assert hash_key(InferenceSettings(local_dir=tmp_path)) is None
    assert not (tmp_path / LOCAL_HASH_KEY_FILE).exists()
