"""Installed size of the inference image's dependencies (target ≤ 150 MB).

    uv run --frozen --no-sync python bench/footprint.py [--keep DIR] [--without PACKAGE]

Exactly what ``containers/inference/Dockerfile`` installs: the core dependencies of
the lock and the Lambda runtime client, less pyarrow and SciPy (``uv export --frozen
--no-dev --extra lambda-runtime --no-emit-project --no-emit-package pyarrow
--no-emit-package scipy``; no Spark, CDK or scikit-learn), plus the image's stand-in
for SciPy (``containers/inference/scipy-stub``), installed with ``uv pip install
--target`` into a temporary directory for this machine's platform (the image's, on
Linux x86_64), then measured on disk. The figure is the files as the wheels ship
them; the bytecode that the image's ``pip install`` compiles next to them is printed
apart. Prints the total and the largest packages. Needs the package index (or uv's
cache). ``install_image_dependencies`` is also how ``bench/cold_start.py`` builds
the image's environment.
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
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 150.0
MB = 1024 * 1024

# What the inference Dockerfile leaves out of the core set: serving reads no files
# (pyarrow), and xgboost gets a stand-in for SciPy instead (IMAGE_STUBS).
IMAGE_LEAVES_OUT = ("pyarrow", "scipy")
# Top-level packages the Dockerfile copies next to the dependencies, from here.
IMAGE_STUBS = (ROOT / "containers" / "inference" / "scipy-stub" / "scipy",)
# Never in the image: what the training side needs.
FORBIDDEN = ("pyspark", "aws-cdk-lib", "scikit-learn", "matplotlib", "pandas", "scipy")


def uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    return str(local) if local.exists() else (shutil.which("uv") or "uv")


def run(*command: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} failed:\n{done.stderr.strip()}")
    return done.stdout


def export_image_requirements(output: Path, without: Sequence[str] = ()) -> list[str]:
    """The image's locked requirements (with hashes) into ``output``; their names."""
    run(
        uv(),
        "export",
        "--frozen",
        "--no-dev",
        "--extra",
        "lambda-runtime",
        "--no-emit-project",
        *(f"--no-emit-package={name}" for name in (*IMAGE_LEAVES_OUT, *without)),
        "--format",
        "requirements-txt",
        "--output-file",
        str(output),
    )
    return [
        line.split(";")[0].split("==")[0].strip()
        for line in output.read_text().splitlines()
        if "==" in line
    ]


def install_image_dependencies(
    target: Path,
    *,
    without: Sequence[str] = (),
    compile_bytecode: bool = False,
    python: str = sys.executable,
) -> list[str]:
    """Installs what the inference image installs (its locked dependencies and its
    stand-ins; not the project itself) into ``target``, for ``python``'s platform;
    returns the names of the locked packages installed."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image-requirements-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        pinned = export_image_requirements(requirements, without)
        print(f"installing {len(pinned)} locked packages into {target} ...", file=sys.stderr)
        run(
            uv(),
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            *(["--compile-bytecode"] if compile_bytecode else []),
            "--python",
            python,
            "--target",
            str(target),
            "-r",
            str(requirements),
        )
    for stub in IMAGE_STUBS:
        shutil.copytree(stub, target / stub.name, ignore=shutil.ignore_patterns("__pycache__"))
        if compile_bytecode:
            run(python, "-m", "compileall", "-q", str(target / stub.name))
    return pinned


def disk_usage(path: Path, *, bytecode: bool | None = None) -> int:
    """Bytes of regular files under ``path`` (symlinks not followed); only the
    bytecode (``bytecode=True``) or all but it (``False``)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            file = Path(dirpath, name)
            if file.is_symlink():
                continue
            if bytecode is not None and (file.suffix == ".pyc") != bytecode:
                continue
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
    for stub in IMAGE_STUBS:
        owners[stub.name] = f"{stub.name} (stand-in)"
    return owners


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
        target = Path(args.keep) if args.keep else Path(scratch) / "site-packages"
        # Compiled as the image's pip compiles, to report that apart.
        pinned = install_image_dependencies(target, without=args.without, compile_bytecode=True)
        owners = distribution_of(target)
        sizes: dict[str, int] = defaultdict(int)
        for entry in target.iterdir():
            if entry.name == "__pycache__":
                continue
            size = disk_usage(entry, bytecode=False) if entry.is_dir() else entry.stat().st_size
            sizes[owners.get(entry.name, entry.name)] += size
        total = sum(sizes.values())
        bytecode = disk_usage(target, bytecode=True)

    forbidden = sorted(p for p in pinned if p.lower() in FORBIDDEN)
    left_out = f" (also left out: {', '.join(args.without)})" if args.without else ""
    print(
        f"\ninference image dependencies{left_out}: {len(pinned)} packages, {total / MB:.1f} MB "
        f"installed (target ≤ {TARGET_MB:g} MB: {'ok' if total / MB <= TARGET_MB else 'MISSED'})"
    )
    print(
        f"  bytecode compiled next to them at install (pip does, in the image): "
        f"{bytecode / MB:.1f} MB more"
    )
    print(
        f"  excluded as required ({', '.join(FORBIDDEN)}): "
        f"{'yes' if not forbidden else 'NO: ' + ', '.join(forbidden)}"
    )
    print("  largest:")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:12]:
        print(f"    {name:<28} {size / MB:8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
