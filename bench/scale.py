"""Scale benchmark: every stage of the pipeline at growing multiples of the real
extract, each stage's time and peak memory, and where each would pass its AWS limit.

    .tools/bin/uv run --frozen --no-sync python bench/scale.py [--scales 0.1,0.3]
        [--stages features,load,train,score] [--trials 8] [--spark-training]
        [--workdir DIR] [--driver-memory 6g] [--database-url URL] [--environment prod]
    .tools/bin/uv run --frozen --no-sync python bench/scale.py --report-from DIR/results.json
        [--environment staging]

A scale is a multiple of the real extract (777,715 loans): ``--scales 1,10,30`` is the
big run (an hour or more on 2 cores, and as far as 24 GB allows: a stage that fails is
printed as such and the next scales of that stage are skipped); the default, 0.1 and
0.3, takes minutes.
Raw loans come from ``credit_risk.datagen`` (streamed in chunks, kept under --workdir
and reused). Stages, each in its own child process, in pipeline order:

  features  credit_risk.features.run_feature_job in local Spark (session start-up included)
  load      credit_risk.store.loader.load_snapshot_uri into a real PostgreSQL (the test
            suite's throwaway server, as bench/store.py starts it, or --database-url)
  train     credit_risk.model.pipeline.run_training, single-machine engine, --trials
            trials of the search (by default the deployment's, ``SearchConfig``: 8)
  train_spark  the same with the Spark engine in local mode (--spark-training)
  score     every snapshot customer scored with ModelPackage.score (probability,
            decision, reasons), in chunks of --chunk rows

Memory: ``rss`` is the child's peak RSS as the kernel accounts it (``os.wait4``'s
rusage, the per-child form of ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child and
the descendants it waited for); ``tree`` is the peak of the child's process tree sampled
every 100 ms, which is what counts for Spark (the JVM is a descendant nobody waits for).

Extrapolation, per stage, to the AWS limit of the chosen environment (cdk.json):
time and memory as straight lines, a fixed cost plus a cost per loan, least squares
on the measured scales (with one scale, or a slope the noise made flat, proportional
through the largest scale: pessimistic). Small scales are dominated by start-up
costs: only the big run's figures say much. Per stage, the limit it is compared with:

  features     Glue: the job's timeout, with the local time divided by the ratio of the
               job's executor vCPUs to this machine's cores (ideal scaling: optimistic)
  load         feature-loader Lambda: timeout and memory; the RDS instance's RAM against
               the table and index size of two snapshots (the active and the kept one)
  train        training Lambda: 900 s and its memory (10,240 MB at most), this machine's
               cores against the Lambda's vCPUs (1 per 1,769 MB) taken as equal; and
               half of the first limit, in training rows, as a distributed_from_rows
  train_spark  the Glue training job (cdk.json training.glue): its timeout, with the
               fit divided by its executor vCPUs over this machine's cores (ideal), and
               the driver's memory (one worker's) against the driver process's peak
  score        a Lambda's 900 s / 10,240 MB (there is no batch-scoring job yet)

Training is measured with the search the deployment runs unless --trials says less.
Fewer trials cannot simply be multiplied up: the search's candidates take lower
learning rates than the base and train more rounds (the 8 trials cost 6 to 14 times
the first one's fit at 1x to 30x). A run of fewer trials says so beside its limit.

The figures are kept in ``results.json`` under --workdir; ``--report-from`` prints the
extrapolation again from such a file, against the limits of another ``--environment``,
without running anything.

Nothing is asserted: figures are printed (shared machines are too noisy for timed
tests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

REAL_EXTRACT = 777_715
AS_OF = "2024-01-01"
MODEL = "credit-risk"
STAGES = ("features", "load", "train", "train_spark", "score")
DEFAULT_STAGES = ("features", "load", "train", "score")
REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_SECONDS = 900
LAMBDA_MAX_MB = 10_240
# Glue worker types: vCPUs and memory (GB) per worker; one worker is the driver.
GLUE_WORKERS = {"G.1X": (4, 16), "G.2X": (8, 32), "G.4X": (16, 64), "G.8X": (32, 128)}
# RAM (GiB) of the RDS instance classes this project uses or would move to.
RDS_MEMORY_GIB = {
    "t4g.micro": 1,
    "t4g.small": 2,
    "t4g.medium": 4,
    "t4g.large": 8,
    "t4g.xlarge": 16,
    "m7g.large": 8,
    "m7g.xlarge": 16,
    "r7g.large": 16,
    "r7g.xlarge": 32,
    "r7g.2xlarge": 64,
}


# --- peak memory ---------------------------------------------------------------------


def _tree_kib(root: int) -> int:
    """Resident memory (KiB) of ``root`` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(parents.get(pid, []))
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def run_stage(stage: str, arguments: dict, timeout: float | None) -> dict:
    """Runs ``stage`` in a child process; its result, seconds, and peak memory (MB)."""
    with tempfile.NamedTemporaryFile("w+", suffix=".json", delete=False) as out:
        result_path = out.name
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        stage,
        "--child-arguments",
        json.dumps(arguments),
        "--child-result",
        result_path,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO_ROOT)
    peak = {"tree": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["tree"] = max(peak["tree"], _tree_kib(process.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = None if timeout is None else started + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    outcome = {
        "seconds": seconds,
        "rss_mb": usage.ru_maxrss / 1024,  # KiB on Linux
        "tree_mb": peak["tree"] / 1024,
        "ok": process.returncode == 0,
    }
    text = Path(result_path).read_text() if Path(result_path).exists() else ""
    Path(result_path).unlink(missing_ok=True)
    if text:
        outcome.update(json.loads(text))
    return outcome


# --- the stages (in the child) ------------------------------------------------------


def child_generate(a: dict) -> dict:
    from credit_risk import datagen

    raw = Path(a["raw"])
    raw.parent.mkdir(parents=True, exist_ok=True)
    datagen.generate(str(raw), datagen.GeneratorConfig(loans=a["loans"], seed=1))
    return {"bytes": raw.stat().st_size}


def child_features(a: dict) -> dict:
    from credit_risk.features import build_local_session, run_feature_job

    spark = build_local_session(
        "bench-scale", driver_memory=a["driver_memory"], shuffle_partitions=a["partitions"]
    )
    try:
        report = run_feature_job(spark, str(Path(a["raw"]).parent), a["out"], AS_OF, "scale")
    finally:
        spark.stop()
    return {k: report[k] for k in ("input_rows", "training_rows", "snapshot_rows")}


def child_load(a: dict) -> dict:
    import psycopg

    from credit_risk.store.credentials import PostgresConfig
    from credit_risk.store.loader import load_snapshot_uri
    from credit_risk.store.postgres import PostgresFeatureStore

    store = PostgresFeatureStore(PostgresConfig(url=a["database_url"]))
    snapshot_id = f"scale_{a['label']}_{int(time.time())}"
    try:
        loaded = load_snapshot_uri(
            store,
            str(Path(a["out"]) / "snapshot"),
            snapshot_id=snapshot_id,
            as_of=date.fromisoformat(AS_OF),
        )
    finally:
        store.close()
    with psycopg.connect(a["database_url"]) as connection:
        (size,) = connection.execute(
            "SELECT pg_total_relation_size(table_name::regclass) FROM feature_snapshots"
            " WHERE snapshot_id = %s",
            (snapshot_id,),
        ).fetchone()
    return {"rows": loaded.row_count, "table_mb": int(size) / 2**20}


def child_train(a: dict, engine: str) -> dict:
    from credit_risk.model.pipeline import TrainingConfig, run_training
    from credit_risk.model.train import SearchConfig

    config = TrainingConfig(search=SearchConfig(trials=a["trials"]), engine=engine)
    result = run_training(
        str(Path(a["out"]) / "training"), a["registry"], MODEL, config=config, run_id="scale"
    )
    return {
        "version": result.version,
        "auc": result.metadata["metrics"]["auc"],
        "fit_seconds": result.seconds["train_xgboost"],
        "training_rows": result.metadata["training_data"]["rows"],
        "gate": result.gate.outcome,
    }


def child_score(a: dict) -> dict:
    import numpy as np
    import pyarrow.dataset as ds

    from credit_risk import schemas
    from credit_risk.registry import Registry

    registry = Registry(a["registry"], MODEL)
    package = registry.load(a["version"])
    snapshot = ds.dataset(str(Path(a["out"]) / "snapshot"), format="parquet")
    scored, declined = 0, 0
    for batch in snapshot.to_batches(columns=list(schemas.FEATURE_NAMES), batch_size=a["chunk"]):
        matrix = np.column_stack(
            [
                batch.column(i).to_numpy(zero_copy_only=False).astype(np.float64)
                for i in range(batch.num_columns)
            ]
        )
        results = package.score(matrix)
        scored += len(results)
        declined += sum(1 for r in results if r.decision == "decline")
    return {"customers": scored, "declined": declined}


def child_main(stage: str, arguments: dict, result_path: str) -> int:
    import resource

    runners = {
        "generate": child_generate,
        "features": child_features,
        "load": child_load,
        "train": lambda a: child_train(a, "xgboost"),
        "train_spark": lambda a: child_train(a, "xgboost-spark"),
        "score": child_score,
    }
    result = runners[stage](arguments)
    # This process's own peak (the wait4 figure adds its waited-for children).
    result["self_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(result_path).write_text(json.dumps(result))
    return 0


# --- extrapolation ----------------------------------------------------------------------


def time_fit(points: list[tuple[float, float]]) -> tuple[float, float, str]:
    """(intercept, slope, how) of t = c + d * n: a fixed cost (start-up) plus a cost
    per loan, least squares on two scales or more. A slope the noise made zero or
    negative, or a single scale, falls back to proportional through the largest
    scale (overheads counted as per-loan cost: pessimistic)."""
    if len(points) >= 2:
        c, d = line_fit(points)
        if d > 0 and c >= 0:
            return c, d, f"linear fit on {len(points)} scales: {c:.0f} s + {d * 1e6:.1f} s/M loans"
    n, t = max(points)
    return 0.0, t / n, f"proportional through the largest scale: {t / n * 1e6:.1f} s/M loans"


def line_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of y = c + d * x; one point: proportional."""
    if len(points) >= 2:
        n = len(points)
        mx = sum(x for x, _ in points) / n
        my = sum(y for _, y in points) / n
        sxx = sum((x - mx) ** 2 for x, _ in points)
        slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
        return my - slope * mx, slope
    (x, y) = points[0]
    return 0.0, y / x


def loans_at_time(points: list[tuple[float, float]], seconds: float) -> tuple[float, str]:
    c, d, how = time_fit(points)
    return max(0.0, (seconds - c) / d), how


def loans_at_memory(points: list[tuple[float, float]], mb: float) -> float:
    c, d = line_fit(points)
    if d <= 0:  # flat within noise: proportional through the largest scale
        n, m = max(points)
        c, d = 0.0, m / n
    return max(0.0, (mb - c) / d)


# --- the run ------------------------------------------------------------------------------


def environment_limits(name: str) -> dict:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"][name]
    return context


def start_postgres(url: str | None):
    if url is not None:
        return url, None
    sys.path.insert(0, str(REPO_ROOT))
    from tests.postgres_server import PostgresServer

    server = PostgresServer()
    server.init()
    server.start()
    return server.url, server


# Below this largest scale the extrapolation is only a quick look (see ``report``).
FAR_SCALE = 10


def fmt_rows(n: float) -> str:
    return f"{n / 1e6:,.1f} M loans ({n / REAL_EXTRACT:,.1f}x)"


def deployed_trials() -> int:
    """The trials of the search the deployment runs (``SearchConfig``'s default)."""
    from credit_risk.model.train import SearchConfig

    return SearchConfig().trials


def report(
    results: dict[str, list[dict]], env: dict, env_name: str, cores: int, trials: int
) -> None:
    deployed = deployed_trials()
    search = (
        f"{trials} trials"
        if trials == deployed
        else f"{trials} of the deployment's {deployed} trials: its time limit comes sooner"
    )
    print()
    print(f"# per stage and scale ({cores} cores here)")
    header = ("stage", "scale", "loans", "seconds", "rss MB", "tree MB")
    print(
        f"{header[0]:<12}{header[1]:>7}{header[2]:>12}{header[3]:>10}{header[4]:>9}"
        f"{header[5]:>9}  notes"
    )
    for stage, rows in results.items():
        for r in rows:
            notes = {
                k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in r.items()
                if k not in {"seconds", "rss_mb", "tree_mb", "ok", "scale", "loans", "self_rss_mb"}
            }
            status = "" if r["ok"] else "FAILED "
            print(
                f"{stage:<12}{r['scale']:>7g}{r['loans']:>12,}{r['seconds']:>10.1f}"
                f"{r['rss_mb']:>9.0f}{r['tree_mb']:>9.0f}  {status}{json.dumps(notes)}"
            )

    print()
    print(f"# where each stage passes its AWS limit ({env_name}, cdk.json)")
    # Small scales carry fixed costs and fewer boosting rounds: their slopes are no
    # guide to the limits, which is why the README's come from 1x to 30x.
    short = sorted(
        stage
        for stage, rows in results.items()
        if any(r["ok"] for r in rows) and max(r["scale"] for r in rows if r["ok"]) < FAR_SCALE
    )
    if short:
        print(
            f"  {', '.join(short)}: measured below {FAR_SCALE}x only, a long extrapolation "
            "for a quick look. The thresholds in cdk.json and the README come from "
            "--scales 1,10,30."
        )
    functions = env["functions"]
    for stage, rows in results.items():
        ok = [r for r in rows if r["ok"]]
        if not ok:
            print(f"{stage}: no successful scale, nothing to extrapolate")
            continue
        times = [(r["loans"], r["seconds"]) for r in ok]
        memory = [(r["loans"], max(r["rss_mb"], r["tree_mb"])) for r in ok]
        if stage == "train_spark":
            glue = env["training"]["glue"]
            vcpus, memory_gb = GLUE_WORKERS[glue["worker_type"]]
            speedup = (glue["number_of_workers"] - 1) * vcpus / cores
            # Only the fit spreads over the executors; reading, evaluation, gate and
            # card stay on the driver at this machine's speed.
            glue_times = [
                (r["loans"], r["seconds"] - r["fit_seconds"] + r["fit_seconds"] / speedup)
                for r in ok
            ]
            at_time, how = loans_at_time(glue_times, glue["timeout_minutes"] * 60)
            driver = [(r["loans"], r["self_rss_mb"]) for r in ok]
            at_mb = loans_at_memory(driver, memory_gb * 1024)
            print(
                f"train_spark: Glue training job {glue['number_of_workers']} x "
                f"{glue['worker_type']} (fit {speedup:.0f}x this machine, ideal; "
                f"{search}), timeout "
                f"{glue['timeout_minutes']} min -> time limit at {fmt_rows(at_time)} [{how}], "
                f"driver memory ({memory_gb} GB: the numpy split and evaluation) at "
                f"{fmt_rows(at_mb)} [linear]"
            )
        elif stage in ("train", "score"):
            settings = functions["training"]
            limit_s = min(settings["timeout_seconds"], LAMBDA_SECONDS)
            limit_mb = settings["memory_mb"]
            at_time, how = loans_at_time(times, limit_s)
            at_mb = loans_at_memory(memory, limit_mb)
            what = "a Lambda sized as training"
            if stage == "train":
                what = f"training Lambda ({search})"
            print(
                f"{stage}: {what} {limit_s} s / {limit_mb} MB -> time limit at "
                f"{fmt_rows(at_time)} [{how}], memory limit at {fmt_rows(at_mb)} [linear]"
            )
            if stage == "train":
                rows_per_loan = ok[-1].get("training_rows", ok[-1]["loans"]) / ok[-1]["loans"]
                safe = min(at_time, at_mb) * 0.5 * rows_per_loan
                print(
                    f"  training rows per raw loan {rows_per_loan:.3f}; half of the first "
                    f"limit = {safe:,.0f} training rows (a candidate distributed_from_rows; "
                    f"configured {env['training']['distributed_from_rows']:,})"
                )
        elif stage == "load":
            settings = functions["feature_loader"]
            at_time, how = loans_at_time(times, settings["timeout_seconds"])
            at_mb = loans_at_memory(memory, settings["memory_mb"])
            print(
                f"load: feature-loader Lambda {settings['timeout_seconds']} s / "
                f"{settings['memory_mb']} MB -> time limit at {fmt_rows(at_time)} [{how}], "
                f"memory limit at {fmt_rows(at_mb)} [linear]"
            )
            tables = [(r["loans"], 2 * r["table_mb"]) for r in ok if r.get("table_mb")]
            instance = env["database"]["instance_type"]
            ram_gib = RDS_MEMORY_GIB.get(instance)
            if tables and ram_gib:
                at_ram = loans_at_memory(tables, ram_gib * 1024 * 0.5)
                storage_mb = env["database"]["max_allocated_storage_gib"] * 1024
                at_disk = loans_at_memory(tables, storage_mb)
                print(
                    f"  RDS {instance} ({ram_gib} GiB): two snapshots (table + index) outgrow "
                    f"half its RAM (the cache that keeps lookups in ms) at {fmt_rows(at_ram)}, "
                    f"its max storage at {fmt_rows(at_disk)} [linear]"
                )
        elif stage == "features":
            glue = env["glue"]
            vcpus, memory_gb = GLUE_WORKERS[glue["worker_type"]]
            executors = glue["number_of_workers"] - 1
            speedup = executors * vcpus / cores
            scaled = [(n, s / speedup) for n, s in times]
            at_time, how = loans_at_time(scaled, glue["timeout_minutes"] * 60)
            at_mb = loans_at_memory(memory, executors * memory_gb * 1024)
            print(
                f"features: Glue {glue['number_of_workers']} x {glue['worker_type']} "
                f"({executors * vcpus} executor vCPUs, {speedup:.0f}x this machine's cores, "
                f"ideal), timeout {glue['timeout_minutes']} min -> time limit at "
                f"{fmt_rows(at_time)} [{how}], executor memory at {fmt_rows(at_mb)} [linear]"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.1,0.3", help="multiples of 777,715 loans")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help=",".join(STAGES))
    parser.add_argument("--spark-training", action="store_true", help="add train_spark")
    parser.add_argument(
        "--trials", type=int, default=None, help="search trials (default: the deployment's)"
    )
    parser.add_argument("--workdir", default=None, help="kept between runs (raw data reused)")
    parser.add_argument("--driver-memory", default="6g", help="local Spark driver memory")
    parser.add_argument("--partitions", type=int, default=8, help="Spark shuffle partitions")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows per scoring chunk")
    parser.add_argument("--database-url", default=None, help="an existing PostgreSQL server")
    parser.add_argument("--environment", default="prod", choices=("dev", "staging", "prod"))
    parser.add_argument("--stage-timeout", type=float, default=None, help="seconds per stage")
    parser.add_argument(
        "--report-from", default=None, help="a results.json: print its extrapolation only"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-arguments", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child, json.loads(args.child_arguments), args.child_result)
    env = environment_limits(args.environment)
    if args.report_from:
        saved = json.loads(Path(args.report_from).read_text())
        report(saved["results"], env, args.environment, saved["cores"], saved["trials"])
        return 0
    if args.trials is None:
        args.trials = deployed_trials()

    scales = [float(s) for s in args.scales.split(",")]
    stages = [s for s in args.stages.split(",") if s]
    if args.spark_training and "train_spark" not in stages:
        where = stages.index("train") + 1 if "train" in stages else len(stages)
        stages.insert(where, "train_spark")
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scale-"))
    cores = os.cpu_count() or 1
    database_url, server = (None, None)
    if "load" in stages:
        database_url, server = start_postgres(args.database_url)
    results: dict[str, list[dict]] = {stage: [] for stage in stages}
    failed: set[str] = set()
    try:
        for scale in scales:
            loans = max(1, round(REAL_EXTRACT * scale))
            label = f"{loans}"
            base = workdir / label
            common = {
                "loans": loans,
                "label": label,
                "raw": str(base / "raw" / "loans.parquet"),
                "out": str(base / "features"),
                "registry": str(base / "registry"),
                "driver_memory": args.driver_memory,
                "partitions": args.partitions,
                "trials": args.trials,
                "chunk": args.chunk,
                "database_url": database_url,
            }
            if not Path(common["raw"]).exists():
                print(f"generating {loans:,} loans ...", file=sys.stderr, flush=True)
                generated = run_stage("generate", common, None)
                print(f"  generated in {generated['seconds']:.0f} s", file=sys.stderr)
            for stage in stages:
                if stage in failed:
                    continue
                if stage == "score":
                    versions = [r for r in results.get("train", []) if r.get("loans") == loans]
                    if not versions or not versions[-1].get("version"):
                        continue
                    common["version"] = versions[-1]["version"]
                missing = not (Path(common["out"]) / "training").exists()
                if stage != "features" and missing:
                    print("  (features first, not measured)", file=sys.stderr)
                    run_stage("features", common, None)
                print(f"{stage} at {scale:g}x ({loans:,} loans) ...", file=sys.stderr, flush=True)
                outcome = run_stage(stage, common, args.stage_timeout)
                outcome.update(scale=scale, loans=loans)
                results[stage].append(outcome)
                print(
                    f"  {outcome['seconds']:.1f} s, rss {outcome['rss_mb']:.0f} MB, "
                    f"tree {outcome['tree_mb']:.0f} MB{'' if outcome['ok'] else ', FAILED'}",
                    file=sys.stderr,
                    flush=True,
                )
                if not outcome["ok"]:
                    failed.add(stage)
    finally:
        if server is not None:
            server.destroy()
    saved = {"cores": cores, "trials": args.trials, "results": results}
    (workdir / "results.json").write_text(json.dumps(saved, indent=1))
    report(results, env, args.environment, cores, args.trials)
    print(f"\nworkdir: {workdir} (figures in results.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
