"""Cold start of the inference Lambda as Lambda sees it, in the image's dependency set
(target ≤ 800 ms), next to the same measure in the dev environment.

    uv run --frozen --no-sync python bench/cold_start.py [--runs 5] [--loans 30000]
        [--database-url URL] [--rebuild]

A cold start is what a new execution environment pays before its first answer:
the interpreter starts, the runtime interface client is imported (``python -m
awslambdaric``), the handler module is imported (Lambda's Init phase), then the first
invocation loads settings, reads the model from the registry and verifies its
sha256, connects to the feature store and scores. Each run is a fresh interpreter
with the environment Lambda gives the function (``LAMBDA_TASK_ROOT``, a sampled
``_X_AMZN_TRACE_ID``, so that tracing is on as when deployed; the function's
variables as the template sets them: the registry's champion, the id-hash key
given directly), scoring one customer against a real PostgreSQL server.

* image: the inference image's locked dependency set, installed once with
  ``bench/footprint.py``'s ``install_image_dependencies`` (cached under
  ``.local/bench/``; ``--rebuild`` starts over) and compiled as the image's pip
  compiles it, run by the base interpreter with ``-s -S`` and a ``PYTHONPATH`` of
  that set, the repository's ``src`` and its root (for ``lambdas``) only: nothing of
  the dev environment is reachable, which each run checks (scikit-learn, pandas and
  pyarrow must not be importable, and ``scipy`` must be the image's stand-in).
* dev: the same in the dev environment (``.venv``), as installed: scikit-learn and
  pandas are there, and xgboost imports them.

Runs alternate between the two (same machine state for both); one discarded run of
each fills the page cache first. Figures are medians. Below them: the stages, the
imports by top-level package (``-X importtime``, self time, one extra run of each),
and what the deployed configuration adds that this one does not exercise: the AWS
clients (S3 registry, Secrets Manager key) and the RDS IAM token, made without
network calls after the first answer, so they are not in the total.

The CPU is this machine's: a function of 1024 MB gets a fraction of a vCPU (one at
1769 MB), and Lambda reads a container image's files lazily on first access; the
figures compare code and dependency sets, they do not predict Lambda's to the
millisecond.

The model is trained once on synthetic features and cached (``.local/bench/``); a
throwaway PostgreSQL server is started unless ``--database-url`` names an empty
database.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # lambdas/ and tests/ live at the repository root

from footprint import IMAGE_LEAVES_OUT, IMAGE_STUBS, install_image_dependencies  # noqa: E402

from credit_risk import names  # noqa: E402

TARGET_MS = 800.0
CACHE = ROOT / ".local" / "bench"
AS_OF = date(2024, 6, 1)
MODEL_NAME = "credit-risk"
# The deployment the benchmarked function runs as (its metrics' namespace too).
DEPLOYMENT = "bench"
# Never importable in the image's environment: what the image does not install.
NOT_IN_THE_IMAGE = ("sklearn", "pandas", "pyarrow", "matplotlib", "pyspark", "flask")
# Stage → the child's mark that ends it, and what it is.
STAGES = {
    "started": "interpreter start",
    "runtime": "runtime client import (awslambdaric)",
    "handler": "handler import (Lambda's Init)",
    "model": "settings, model load and sha256 check",
    "request": "first request (store connection, score)",
}

# The child: one execution environment, from its first line to its first answer.
CHILD = """
import time
started = time.time()
import importlib, importlib.util, json, sys

spawned, event, checks = float(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
with_aws_clients = sys.argv[4] == "aws"


class Context:
    function_name = "credit-risk-inference"
    function_version = "1"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = (
        "arn:aws:lambda:eu-west-1:000000000000:function:credit-risk-inference:live"
    )
    log_group_name = "/aws/lambda/credit-risk-inference"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self):
        return 29_000


marks = {"started": started}
import awslambdaric.bootstrap
marks["runtime"] = time.time()
handler = importlib.import_module("lambdas.inference.handler")
marks["handler"] = time.time()
handler.initialize()
marks["model"] = time.time()
response = handler.lambda_handler(event, Context())
marks["request"] = time.time()

# Not timed above: the deployed function's AWS clients, which a local registry, a
# given key and a password-less store do not create (no network calls here).
if with_aws_clients:
    import boto3
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from credit_risk.store.credentials import PostgresConfig, connect_kwargs
    boto3.client("s3")  # the registry's
    SecretsProvider()  # Powertools' client, for the id-hash key
    connect_kwargs(PostgresConfig(url="postgresql://app@proxy.local/features", iam_auth=True))
aws_clients = time.time() - marks["request"]

scipy = sys.modules.get("scipy")
loaded = {
    "sklearn": "sklearn" in sys.modules,
    "pandas": "pandas" in sys.modules,
    "scipy": "stand-in" if getattr(scipy, "STUB", False) else ("SciPy" if scipy else None),
    "aws_xray_sdk": "aws_xray_sdk.core" in sys.modules,
    "openapi_models": "aws_lambda_powertools.event_handler.openapi.models" in sys.modules,
}
leaked = [name for name in checks if importlib.util.find_spec(name) is not None]
print(json.dumps({
    "spawned": spawned, "marks": marks, "status": response["statusCode"],
    "aws_clients": aws_clients, "loaded": loaded, "leaked": leaked,
}), file=sys.stderr)
"""


def base_python() -> str:
    """The interpreter the dev venv was made from: no site-packages of its own with
    ``-S``, as the image's /usr/bin/python3.11 has none of ours."""
    return str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())


def image_environment(rebuild: bool) -> Path:
    """The image's dependency set, compiled, cached by the lock and the stand-ins."""
    key = hashlib.sha256((ROOT / "uv.lock").read_bytes())
    key.update(repr((IMAGE_LEAVES_OUT, sys.version_info[:2])).encode())
    for stub in IMAGE_STUBS:
        for file in sorted(stub.rglob("*.py")):
            key.update(file.read_bytes())
    home = CACHE / f"image-env-{key.hexdigest()[:12]}"
    target = home / "site-packages"
    if rebuild and home.exists():
        shutil.rmtree(home)
    if not (home / "complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        install_image_dependencies(target, compile_bytecode=True, python=base_python())
        (home / "complete").write_text("")
    return target


def prepare_registry(loans: int) -> tuple[Path, Path]:
    """A registry whose champion is trained on synthetic features, and the serving
    snapshot of the same customers (parquet), cached."""
    home = CACHE / f"cold-start-model-{loans}"
    registry, snapshot = home / "registry", home / "snapshot.parquet"
    if (home / "complete").exists():
        return registry, snapshot
    import pyarrow.parquet as pq

    from credit_risk.model.pipeline import run_training
    from credit_risk.model.synthetic import training_features
    from credit_risk.registry import Registry
    from tests.integration.api.conftest import snapshot_of

    shutil.rmtree(home, ignore_errors=True)
    print(f"training the benchmark's model on {loans:,} loans (cached) ...", file=sys.stderr)
    training, _ = training_features(loans, seed=3)
    (home / "features").mkdir(parents=True)
    pq.write_table(training, home / "features" / "part-0.parquet")
    result = run_training(str(home / "features"), str(registry), MODEL_NAME)
    Registry(str(registry), MODEL_NAME).promote(result.version, force=not result.gate.passed)
    pq.write_table(snapshot_of(training, AS_OF), snapshot)
    (home / "complete").write_text("")
    return registry, snapshot


def load_store(database_url: str, snapshot: Path) -> str:
    """Loads the snapshot; returns a customer it holds."""
    import pyarrow.parquet as pq

    from credit_risk.settings import Settings
    from credit_risk.store import create_store

    table = pq.read_table(snapshot)
    with create_store(Settings(database_url=database_url)) as store:
        store.migrate()
        store.load_snapshot(table, f"bench-{int(time.time())}", AS_OF)
    return table.column("customer_id")[0].as_py()


def lambda_environment(workdir: Path, registry: Path, database_url: str) -> dict[str, str]:
    """What Lambda sets, and the function's variables as the template sets them (the
    registry's champion, refreshed every few minutes); references become local."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": str(workdir),
        "LAMBDA_TASK_ROOT": str(workdir),
        "LAMBDA_RUNTIME_DIR": str(workdir),
        "AWS_LAMBDA_FUNCTION_NAME": "credit-risk-inference",
        "AWS_LAMBDA_FUNCTION_VERSION": "1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": "bench",
        "_X_AMZN_TRACE_ID": "Root=1-65f0a000-0123456789abcdef01234567;"
        "Parent=0123456789abcdef;Sampled=1",
        # Segments go to a UDP port nobody listens on, as cheap as to the daemon.
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        names.ENV_ENVIRONMENT: DEPLOYMENT,
        names.ENV_MODEL_NAME: MODEL_NAME,
        names.ENV_REGISTRY_URI: str(registry),
        names.ENV_POWERTOOLS_METRICS_NAMESPACE: names.metric_namespace(DEPLOYMENT),
        names.ENV_LOG_LEVEL: "INFO",
        names.ENV_DATABASE_URL: database_url,
        names.ENV_MODEL_FALLBACK_TO_CHAMPION: "true",
        names.ENV_MODEL_REFRESH_SECONDS: str(names.MODEL_REFRESH_SECONDS),
        names.ENV_POWERTOOLS_SERVICE_NAME: names.SERVICE_INFERENCE,
        f"{names.ENV_PREFIX}ID_HASH_KEY": "bench-id-hash-key",
    }


def commands(image_env: Path) -> dict[str, tuple[list[str], dict[str, str], tuple[str, ...]]]:
    """Per environment: the interpreter's command line, extra environment, and the
    modules that must not be importable in it."""
    isolated = os.pathsep.join((str(image_env), str(ROOT / "src"), str(ROOT)))
    return {
        "image": ([base_python(), "-s", "-S"], {"PYTHONPATH": isolated}, NOT_IN_THE_IMAGE),
        "dev": ([str(ROOT / ".venv" / "bin" / "python"), "-s"], {"PYTHONPATH": str(ROOT)}, ()),
    }


def cold_start(
    command: list[str], env: dict[str, str], checks: tuple[str, ...], event: str, cwd: Path
) -> dict:
    spawned = time.time()
    done = subprocess.run(
        [*command, "-c", CHILD, repr(spawned), event, json.dumps(checks), "aws"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,  # logs, metrics and score records, as in CloudWatch
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"the cold-start process failed:\n{done.stderr.strip()[-3000:]}")
    result = json.loads(done.stderr.strip().splitlines()[-1])
    if result["status"] != 200:
        sys.exit(f"the first request answered {result['status']}")
    if result["leaked"]:
        sys.exit(f"not isolated: {', '.join(result['leaked'])} importable in the image's set")
    if checks and result["loaded"]["scipy"] == "SciPy":
        sys.exit("not isolated: the real SciPy was imported in the image's set")
    marks, previous = result["marks"], result["spawned"]
    stages = {}
    for stage in STAGES:
        stages[stage] = (marks[stage] - previous) * 1000
        previous = marks[stage]
    stages["total"] = sum(stages.values())
    stages["aws_clients"] = result["aws_clients"] * 1000
    return {"stages": stages, "loaded": result["loaded"]}


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")


def imports_by_package(
    command: list[str], env: dict[str, str], checks: tuple[str, ...], event: str, cwd: Path
) -> Counter:
    """Self time of every import (ms) of the runtime client and the handler, summed
    by top-level package (``-X importtime``)."""
    spawned = repr(time.time())
    done = subprocess.run(
        [*command, "-X", "importtime", "-c", CHILD, spawned, event, json.dumps(checks), "-"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    totals: Counter = Counter()
    if done.returncode != 0:
        sys.exit(f"the -X importtime process failed:\n{done.stderr.strip()[-3000:]}")
    for line in done.stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            totals[match.group(2).split(".")[0]] += int(match.group(1)) / 1000
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold starts per environment")
    parser.add_argument("--loans", type=int, default=30_000, help="synthetic training loans")
    parser.add_argument(
        "--database-url", default=None, help="an empty PostgreSQL database; default: start one"
    )
    parser.add_argument("--rebuild", action="store_true", help="reinstall the image's set")
    args = parser.parse_args()

    from credit_risk.local_api import build_event

    image_env = image_environment(args.rebuild)
    registry, snapshot = prepare_registry(args.loans)
    environments = commands(image_env)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cold-start-")))
        database_url = args.database_url
        if database_url is None:
            from tests.postgres_server import PostgresServer

            server = PostgresServer()
            stack.callback(server.destroy)
            server.init()
            server.start()
            database_url = server.url
        customer = load_store(database_url, snapshot)
        event = json.dumps(
            build_event(
                method="POST",
                target=names.ROUTE_SCORE,
                headers={"content-type": "application/json"},
                body=json.dumps({"customer_id": customer}).encode(),
                alias=names.LIVE_ALIAS,
            )
        )
        base_env = lambda_environment(workdir, registry, database_url)

        def run(name: str) -> dict:
            command, extra, checks = environments[name]
            return cold_start(command, {**base_env, **extra}, checks, event, workdir)

        print(f"cold starts: {args.runs} per environment, alternated ...", file=sys.stderr)
        for name in environments:
            run(name)  # page cache, and the repository's own bytecode
        results: dict[str, list[dict]] = {name: [] for name in environments}
        for _ in range(args.runs):
            for name in environments:
                results[name].append(run(name))
        imports = {
            name: imports_by_package(command, {**base_env, **extra}, checks, event, workdir)
            for name, (command, extra, checks) in environments.items()
        }

    def median(name: str, stage: str) -> float:
        return statistics.median(r["stages"][stage] for r in results[name])

    print(
        f"\ninference Lambda cold start, as Lambda sees it (interpreter start to first "
        f"answer; median of {args.runs}, PostgreSQL on loopback, tracing on)"
    )
    for name, label in (("image", "image's dependency set"), ("dev", "dev venv (informative)")):
        total = median(name, "total")
        spread = [round(r["stages"]["total"]) for r in results[name]]
        verdict = "ok" if total <= TARGET_MS else "MISSED"
        print(
            f"  {label:<26} {total:7.0f} ms  target ≤ {TARGET_MS:g} ms  {verdict}"
            f"   (runs: {', '.join(map(str, spread))})"
        )
    print(f"  {'stage':<44} {'image':>8} {'dev':>8}")
    for stage, label in STAGES.items():
        print(f"    {label:<42} {median('image', stage):6.0f} ms {median('dev', stage):6.0f} ms")
    print(
        f"  {'deployed path adds, not in the total:':<44}\n"
        f"    {'S3 and Secrets Manager clients, RDS token':<42} "
        f"{median('image', 'aws_clients'):6.0f} ms {median('dev', 'aws_clients'):6.0f} ms"
        "   (+ their network round trips)"
    )
    print("  imports by top-level package (-X importtime, self time, one run each):")
    top = sorted(set(imports["image"]) | set(imports["dev"]), key=lambda n: -imports["image"][n])
    for package in top[:14]:
        image, dev = imports["image"][package], imports["dev"][package]
        print(f"    {package:<42} {image:6.0f} ms {dev:6.0f} ms")
    rest = {name: sum(v for k, v in imports[name].items() if k not in top[:14]) for name in imports}
    print(f"    {'(everything else)':<42} {rest['image']:6.0f} ms {rest['dev']:6.0f} ms")
    for name in environments:
        loaded = results[name][-1]["loaded"]
        print(f"  {name} loaded: " + ", ".join(f"{k}={v}" for k, v in loaded.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
