"""Reading and writing files by URI: a local path or ``s3://bucket/key``.

S3 goes through boto3 (not pyarrow's own S3 client) so that credentials, retries
and endpoints behave like every other AWS call in the project, moto included.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from credit_risk import schemas
from credit_risk.errors import InvalidInputError

_ARROW_TYPES = {
    schemas.STRING: pa.string(),
    schemas.INT64: pa.int64(),
    schemas.FLOAT64: pa.float64(),
    schemas.DATE: pa.date32(),
}


def arrow_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """The pyarrow schema of one of the contracts in ``credit_risk.schemas``."""
    return pa.schema([pa.field(name, _ARROW_TYPES[kind]) for name, kind in columns])


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` → ``("bucket", "some/key")``."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise InvalidInputError(f"not an S3 URI: {uri!r}")
    return bucket, key


def join(root: str, *parts: str) -> str:
    """Joins URI parts with ``/`` whether ``root`` is local or on S3."""
    return "/".join([root.rstrip("/"), *(part.strip("/") for part in parts)])


def _s3():
    import boto3  # imported here: a local run never pays for it

    return boto3.client("s3")


def _is_data_file(name: str) -> bool:
    # Spark and Hadoop leave _SUCCESS, .crc and other hidden files beside the data.
    base = name.rsplit("/", 1)[-1]
    return bool(base) and not base.startswith(("_", "."))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Data files under ``uri`` (a file or a folder, recursively), sorted."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        paginator = _s3().get_paginator("list_objects_v2")
        keys = [
            obj["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])
        ]
        return sorted(
            f"s3://{bucket}/{key}"
            for key in keys
            if key.endswith(suffix)
            and _is_data_file(key)
            and (key == prefix or key.startswith(prefix.rstrip("/") + "/"))
        )
    path = Path(uri)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise InvalidInputError(f"no such file or folder: {uri}")
    return sorted(
        str(p)
        for p in path.rglob(f"*{suffix}")
        if p.is_file() and all(_is_data_file(part) for part in p.relative_to(path).parts)
    )


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return _s3().get_object(Bucket=bucket, Key=key)["Body"].read()
    return Path(uri).read_bytes()


def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def upload_file(local_path: str, uri: str) -> None:
    """Copies a local file to ``uri``, streaming (multipart on S3 for large files)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _s3().upload_file(local_path, bucket, key)
        return
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local_path, uri)


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Reads a Parquet file or a folder of Parquet files (as Spark writes them)."""
    files = list_files(uri, ".parquet")
    if not files:
        raise InvalidInputError(f"no Parquet files under {uri}")
    tables = []
    for file in files:
        source = io.BytesIO(read_bytes(file)) if is_s3(file) else file
        tables.append(pq.read_table(source, columns=columns))
    return pa.concat_tables(tables, promote_options="default")
