"""Reading and writing files by URI: a local path or ``s3://bucket/key``.

S3 goes through boto3 (not pyarrow's own S3 client) so that credentials, retries
and endpoints behave like every other AWS call in the project, moto included.

pyarrow is imported by the functions that need it, not here: the inference
image, which the release function runs too, has none, and reads files through
this module (the release report's pass over the scoring log).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from credit_risk import schemas
from credit_risk.errors import InvalidInputError

if TYPE_CHECKING:
    import pyarrow as pa

# What a streaming read holds of a file at a time.
CHUNK_BYTES = 1 << 20


def non_finite_counts(data: pa.Table | pa.RecordBatch) -> dict[str, int]:
    """Floating-point column -> how many of its values are NaN or infinite (columns
    without any left out). A null is a missing value and counts as none: a NaN is
    not a missing value but a computation gone wrong, and an infinity is no number
    a model was trained on."""
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = {}
    for field in data.schema:
        if pa.types.is_floating(field.type):
            finite = pc.is_finite(data.column(field.name))
            bad = pc.sum(pc.invert(finite)).as_py() or 0
            if bad:
                counts[field.name] = bad
    return counts


def refuse_non_finite(data: pa.Table | pa.RecordBatch, what: str) -> None:
    """InvalidInputError naming the columns of ``data`` that hold NaN or infinity."""
    counts = non_finite_counts(data)
    if counts:
        columns = ", ".join(f"{name} ({count})" for name, count in sorted(counts.items()))
        raise InvalidInputError(f"{what} has NaN or infinite values in {columns}")


def arrow_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """The pyarrow schema of one of the contracts in ``credit_risk.schemas``."""
    import pyarrow as pa

    types = {
        schemas.STRING: pa.string(),
        schemas.INT64: pa.int64(),
        schemas.FLOAT64: pa.float64(),
        schemas.DATE: pa.date32(),
    }
    return pa.schema([pa.field(name, types[kind]) for name, kind in columns])


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


def read_bytes_if_exists(uri: str) -> bytes | None:
    """``read_bytes``, or None when there is no such file or object (other errors,
    such as access denied, are raised)."""
    try:
        return read_bytes(uri)
    except FileNotFoundError:
        return None
    except Exception as exc:  # botocore's ClientError, imported only for S3
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise


def read_chunks(uri: str, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes of one file, ``size`` at most at a time: a large file is never
    held whole. Closing the generator early closes the file (or the S3 stream)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        body = _s3().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(size)
        finally:
            body.close()
        return
    with Path(uri).open("rb") as file:
        while chunk := file.read(size):
            yield chunk


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
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = list_files(uri, ".parquet")
    if not files:
        raise InvalidInputError(f"no Parquet files under {uri}")
    tables = []
    for file in files:
        source = io.BytesIO(read_bytes(file)) if is_s3(file) else file
        tables.append(pq.read_table(source, columns=columns))
    # One dataset: a part without a column the others have is refused, where merging
    # would fill that column of its rows with nulls.
    expected = set(tables[0].column_names)
    for file, table in zip(files[1:], tables[1:], strict=True):
        if (found := set(table.column_names)) != expected:
            differences = []
            if lacks := sorted(expected - found):
                differences.append(f"lacks {', '.join(lacks)}")
            if adds := sorted(found - expected):
                differences.append(f"adds {', '.join(adds)}")
            raise InvalidInputError(
                f"the Parquet files under {uri} do not have the same columns: {file} "
                f"{'; '.join(differences)} (beside {files[0]})"
            )
    return pa.concat_tables(tables, promote_options="default")
