"""The distributed training's Glue entrypoint: its arguments are the names the state
machine passes, read with argparse off Glue."""

from __future__ import annotations

from credit_risk import names
from tests.script_modules import load_glue_script


def test_the_arguments_are_the_shared_names():
    entrypoint = load_glue_script(names.GLUE_TRAINING_SCRIPT)

    assert set(entrypoint.REQUIRED) == {
        names.GLUE_ARG_FEATURES,
        names.GLUE_ARG_REGISTRY,
        names.GLUE_ARG_RUN_ID,
        names.GLUE_ARG_RESULT,
    }
    assert {
        names.GLUE_ARG_SNAPSHOT,
        names.GLUE_ARG_GATE,
        names.GLUE_ARG_WORKERS,
        names.GLUE_ARG_SETTINGS,
    } <= set(entrypoint.OPTIONAL)


def test_job_arguments_are_read_like_glue_passes_them():
    entrypoint = load_glue_script(names.GLUE_TRAINING_SCRIPT)
    argv = [
        "model_training.py",
        "--JOB_NAME",
        "credit-risk-dev-training",
        "--features_uri",
        "s3://c/curated/r1/training",
        "--registry_uri",
        "s3://m/registry",
        "--run_id",
        "r1",
        "--result_uri",
        "s3://c/curated/r1/training_result.json",
        "--gate",
        '{"confidence":0.9}',
    ]

    arguments = entrypoint.parse_arguments(argv)

    assert arguments["features_uri"] == "s3://c/curated/r1/training"
    assert arguments["gate"] == '{"confidence":0.9}'
    assert arguments["snapshot_uri"] is None
