"""Publish a released commit's OpenAPI document, one folder per API version.

The release pipeline runs it once prod is deployed and smoke-tested, from the
released commit's ``openapi.json`` (the document the API serves at
``/v1/openapi.json``, but for its ``servers``: a test keeps the two equal). It
writes

    s3://<bucket>/openapi/<version>/openapi.json   the latest release of <version>
    s3://<bucket>/openapi/latest/openapi.json      the latest release of all

where <version> is the document's ``info.version``. The bucket keeps every object
version, so a release of the same API version again keeps the earlier document;
each object names its commit in its metadata. Needs only the standard library and
boto3 (the CodeBuild image has no project environment).

    python infra/publish_openapi.py --bucket BUCKET --commit SHA [--document openapi.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

PREFIX = "openapi"
LATEST = "latest"
# A version becomes a key segment: semantic-version characters only.
_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]{0,63}")


class PublishError(RuntimeError):
    """The document cannot be published as it is."""


def document_version(text: str) -> str:
    """The API version of an OpenAPI document (its ``info.version``)."""
    try:
        document = json.loads(text)
        version = document["info"]["version"] if "openapi" in document else None
    except (ValueError, KeyError, TypeError) as exc:
        raise PublishError("not an OpenAPI document with info.version") from exc
    if version is None:
        raise PublishError("not an OpenAPI document with info.version")
    if not isinstance(version, str) or not _VERSION.fullmatch(version) or version == LATEST:
        raise PublishError(f"info.version {version!r} cannot name a folder")
    return version


def publish(text: str, *, bucket: str, commit: str, client: Any = None) -> list[str]:
    """Writes the document under its version and as the latest; returns the keys."""
    version = document_version(text)
    if client is None:
        import boto3

        client = boto3.client("s3")
    keys = [f"{PREFIX}/{version}/openapi.json", f"{PREFIX}/{LATEST}/openapi.json"]
    for key in keys:
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=text.encode("utf-8"),
            ContentType="application/json",
            Metadata={"commit": commit, "api-version": version},
        )
    return keys


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bucket", default=os.environ.get("DOCS_BUCKET"), help="default: $DOCS_BUCKET"
    )
    parser.add_argument(
        "--commit",
        default=os.environ.get("COMMIT_ID"),
        help="released commit (default: $COMMIT_ID)",
    )
    parser.add_argument("--document", default="openapi.json", help="the document to publish")
    arguments = parser.parse_args(argv)
    for name in ("bucket", "commit"):
        if not getattr(arguments, name):
            parser.error(f"--{name} is required")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = _arguments(argv)
    try:
        text = Path(arguments.document).read_text(encoding="utf-8")
        keys = publish(text, bucket=arguments.bucket, commit=arguments.commit)
    except (OSError, PublishError) as exc:
        print(f"publishing {arguments.document} FAILED: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the bucket's answer (access, region): one line, no trace
        print(f"publishing FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    for key in keys:
        print(f"published s3://{arguments.bucket}/{key} ({arguments.commit})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
