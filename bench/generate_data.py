"""Throughput and memory of the synthetic data generator.

Generates the default 777,715 loans (the size of the real extract) and, with
``--scale``, multiples of it, each in a fresh process so that peak memory is the
generator's own. Flat memory across sizes shows that generation streams.

    python bench/generate_data.py [--scale 1 4] [--format csv]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from credit_risk.datagen import DEFAULT_LOANS

CHILD = """
import json, resource, sys, time
from credit_risk import datagen
loans, output = int(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
datagen.generate(output, datagen.GeneratorConfig(loans=loans))
seconds = time.perf_counter() - start
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))
"""


def measure(loans: int, fmt: str, workdir: Path) -> dict:
    output = workdir / f"loans-{loans}.{fmt}"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(loans), str(output)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(result.stdout)
    figures["mib_on_disk"] = output.stat().st_size / 2**20
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=int,
        nargs="+",
        default=[1, 4],
        help="multiples of 777,715 loans to generate",
    )
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    args = parser.parse_args()
    print(f"{'loans':>12} {'seconds':>8} {'rows/s':>12} {'peak MiB':>9} {'MiB out':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scale:
            loans = DEFAULT_LOANS * scale
            f = measure(loans, args.format, Path(tmp))
            print(
                f"{loans:>12,} {f['seconds']:>8.1f} {loans / f['seconds']:>12,.0f} "
                f"{f['peak_mib']:>9.0f} {f['mib_on_disk']:>8.0f}"
            )
    print("target: 777,715 loans in under 60 s; peak memory flat as loans grow")


if __name__ == "__main__":
    main()
