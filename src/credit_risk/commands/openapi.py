"""``credit-risk openapi``: write the scoring API's OpenAPI document.

The document comes from the inference handler's resolver and request/response
models; ``openapi.json`` at the repository root is its committed copy, and a test
fails when the two differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from credit_risk.local_api import load_handler_module

DEFAULT_OUTPUT = "openapi.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "openapi",
        help="write the scoring API's OpenAPI document (openapi.json)",
        description="Generate the OpenAPI document of the scoring API from the inference "
        "handler's routes and models.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--output", default=DEFAULT_OUTPUT, help="file to write; '-' prints to standard output"
    )
    parser.set_defaults(handler=run_openapi)


def openapi_document() -> str:
    """The document as the handler's resolver produces it (no model is loaded)."""
    return load_handler_module("credit_risk_inference_openapi").openapi_json()


def run_openapi(args: argparse.Namespace) -> int:
    document = openapi_document()
    if args.output == "-":
        sys.stdout.write(document)
    else:
        Path(args.output).write_text(document, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
