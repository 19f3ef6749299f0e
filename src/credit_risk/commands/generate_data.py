"""``credit-risk generate-data``: synthetic raw loans with a truth sidecar."""

from __future__ import annotations

import argparse

from credit_risk import datagen, schemas
from credit_risk.commands import positive_int
from credit_risk.progress import Progress
from credit_risk.settings import Settings


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError(f"a rate must be within [0, 0.5], got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = datagen.DirtRates()
    parser = subparsers.add_parser(
        "generate-data",
        help="write synthetic raw loans (24 columns) and their true default probabilities",
        description=(
            "Write synthetic raw loans shaped like the real extracts, with a known "
            "default-probability function and configurable dirt, plus a truth sidecar "
            "<output>.truth.parquet (loan_id, true_pd). Deterministic for a given seed."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--loans",
        type=positive_int,
        default=datagen.DEFAULT_LOANS,
        help="number of loan rows to write",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="file to write (.csv or .parquet; local path or s3:// URI); "
        "default: the lake's raw zone, raw/loans/ingest_date=TODAY/loans.FORMAT",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=datagen.DEFAULT_SEED,
        help="random seed; the same seed and --loans give the same file",
    )
    parser.add_argument(
        "--format",
        choices=datagen.FORMATS,
        default=None,
        help="output format; default: from the --output suffix, else csv",
    )
    parser.add_argument(
        "--not-employed-rate",
        type=float,
        default=0.17,
        help="share of customers not employed (far-future job_start_date)",
    )
    dirt = parser.add_argument_group("dirt rates (share of rows, each within [0, 0.5])")
    dirt.add_argument(
        "--null-rate", type=_rate, default=defaults.null, help="a required column is null"
    )
    dirt.add_argument(
        "--duplicate-rate",
        type=_rate,
        default=defaults.duplicate_loan_id,
        help="a row re-delivers an earlier row (duplicated loan_id)",
    )
    dirt.add_argument(
        "--bad-date-rate",
        type=_rate,
        default=defaults.bad_date,
        help="a date column does not parse",
    )
    dirt.add_argument(
        "--negative-amount-rate",
        type=_rate,
        default=defaults.negative_amount,
        help="loan_amount is negative",
    )
    dirt.add_argument(
        "--bad-flag-rate",
        type=_rate,
        default=defaults.bad_flag,
        help="flag_own_car or flag_own_realty is outside Y/N",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    fmt = args.format or (datagen.format_of(args.output) if args.output else "csv")
    output = args.output or datagen.default_output(Settings().lake, fmt)
    config = datagen.GeneratorConfig(
        loans=args.loans,
        seed=args.seed,
        not_employed_rate=args.not_employed_rate,
        dirt=datagen.DirtRates(
            null=args.null_rate,
            duplicate_loan_id=args.duplicate_rate,
            bad_date=args.bad_date_rate,
            negative_amount=args.negative_amount_rate,
            bad_flag=args.bad_flag_rate,
        ),
    )
    progress = Progress("generating loans", args.loans)
    datagen.generate(output, config, fmt=fmt, on_chunk=progress.advance)
    seconds = progress.finish()
    print(f"wrote {args.loans:,} loans to {output} in {seconds:.1f}s")
    print(f"truth sidecar: {schemas.truth_path_for(output)}")
    return 0
