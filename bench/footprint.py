"""Installed size of the inference image's dependencies (target ≤ 300 MB).

    uv run --frozen --no-sync python bench/footprint.py [--keep DIR]

Exactly what ``containers/inference/Dockerfile`` installs: the core dependencies of
the lock and the Lambda runtime client, less pyarrow (``uv export --frozen --no-dev
--extra lambda-runtime --no-emit-project --no-emit-package pyarrow``; no Spark, CDK
or scikit-learn), installed with ``uv pip install --target`` into a temporary
directory for this machine's platform (the image's, on Linux x86_64), then measured
on disk. Prints the total and the largest packages. Needs the package index (or
uv's cache).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 300.0
MB = 1024 * 1024


def uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.exists() else (shutil.which("uv") or "uv")


def run(*command: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stderr.strip()}")
    return done.stdout


def disk_usage(path: Path) -> int:
    """Bytes of regular files under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            file = Path(dirpath, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def distribution_of(target: Path) -> dict[str, str]:
    """Top-level names in ``target`` → the distribution that installed them (RECORD)."""
    owners: dict[str, str] = {}
    for record in target.glob("*.dist-info/RECORD"):
        dist = re.sub(r"-[^-]+\.dist-info$", "", record.parent.name)
        for line in record.read_text().splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.endswith(".dist-info"):
                owners.setdefault(top, dist)
        owners[record.parent.name] = dist
    return owners


# What the inference Dockerfile leaves out of the core set (serving reads no files).
IMAGE_LEAVES_OUT = ("pyarrow",)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", default=None, help="install here and keep it")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="leave a locked package out (uv export --no-emit-package), "
        "to measure a proposed image; repeatable",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="footprint-") as scratch:
        workdir = Path(scratch)
        requirements = workdir / "requirements.txt"
        run(
            uv(),
            "export",
            "--frozen",
            "--no-dev",
            "--extra",
            "lambda-runtime",
            "--no-emit-project",
            *(f"--no-emit-package={name}" for name in IMAGE_LEAVES_OUT),
            "--format",
            "requirements-txt",
            "--output-file",
            str(requirements),
            *(f"--no-emit-package={name}" for name in args.without),
        )
        pinned = [
            line.split(";")[0].split("==")[0].strip()
            for line in requirements.read_text().splitlines()
            if "==" in line
        ]
        target = Path(args.keep) if args.keep else workdir / "site-packages"
        print(f"installing {len(pinned)} locked core packages into {target} ...", file=sys.stderr)
        run(
            uv(),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--python",
            sys.executable,
            "--target",
            str(target),
            "-r",
            str(requirements),
        )

        owners = distribution_of(target)
        sizes: dict[str, int] = defaultdict(int)
        for entry in target.iterdir():
            size = disk_usage(entry) if entry.is_dir() else entry.stat().st_size
            sizes[owners.get(entry.name, entry.name)] += size
        total = sum(sizes.values())

    forbidden = sorted(
        p for p in pinned if p.lower() in {"pyspark", "aws-cdk-lib", "scikit-learn", "matplotlib"}
    )
    left_out = f" (left out: {', '.join(args.without)})" if args.without else ""
    print(
        f"\ninference image dependencies{left_out}: {len(pinned)} packages, {total / MB:.1f} MB "
        f"installed (target ≤ {TARGET_MB:g} MB: {'ok' if total / MB <= TARGET_MB else 'MISSED'})"
    )
    print(
        f"  excluded as required (Spark, CDK, scikit-learn, matplotlib): "
        f"{'yes' if not forbidden else 'NO: ' + ', '.join(forbidden)}"
    )
    print("  largest:")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:12]:
        print(f"    {name:<28} {size / MB:8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
