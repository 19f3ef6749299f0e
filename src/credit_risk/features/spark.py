"""Spark plumbing: a local session, the contract schemas as Spark types, and reading
raw loans with an explicit schema.

Reading checks what it can before Spark touches the data (the files exist, the CSV
header or the Parquet schema is the raw contract, the file is not empty), so that a
wrong input ends in one ``InvalidInputError`` naming the file rather than a JVM
stack trace halfway through the job.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812 (the PySpark convention)
from pyspark.sql import types as T  # noqa: N812

from credit_risk import io, schemas
from credit_risk.errors import InvalidInputError

# Spark puts the raw text of a CSV line that does not fit the schema (wrong number
# of fields, text in a number column) here instead of silently nulling the values.
CORRUPT_RECORD_COLUMN = "_corrupt_record"
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet",)

_SPARK_TYPES: dict[str, T.DataType] = {
    schemas.STRING: T.StringType(),
    schemas.INT64: T.LongType(),
    schemas.FLOAT64: T.DoubleType(),
    schemas.DATE: T.DateType(),
}
_LOG4J2_PROPERTIES = Path(__file__).with_name("log4j2.properties")


def spark_schema(columns: Iterable[tuple[str, str]]) -> T.StructType:
    """The Spark schema of one of the contracts in ``credit_risk.schemas``."""
    return T.StructType([T.StructField(name, _SPARK_TYPES[kind]) for name, kind in columns])


RAW_SCHEMA = spark_schema(schemas.RAW_LOAN_COLUMNS)
# What the reader returns for either format: the raw columns plus the corrupt record.
READ_SCHEMA = T.StructType(
    [*RAW_SCHEMA.fields, T.StructField(CORRUPT_RECORD_COLUMN, T.StringType())]
)


def build_local_session(
    app_name: str = "credit-risk-features",
    *,
    master: str = "local[*]",
    shuffle_partitions: int = 8,
    driver_memory: str = "2g",
    quiet: bool = True,
) -> SparkSession:
    """A Spark session in local mode, configured like the Glue job runs.

    Few shuffle partitions (a laptop has a handful of cores, the default of 200
    mostly schedules empty tasks), no UI, no console progress bars, UTC session time
    zone. ``quiet`` keeps Spark's own logging to errors, from JVM start-up on.
    """
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if quiet:
        options = f"-Dlog4j2.configurationFile=file:{_LOG4J2_PROPERTIES}"
        builder = builder.config("spark.driver.extraJavaOptions", options)
    spark = builder.getOrCreate()
    if quiet:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def list_raw_files(uri: str) -> list[str]:
    """The raw data files of ``uri`` (a file or a folder, recursively).

    The generator's truth sidecars (``*.truth.parquet``) and Spark/Hadoop side files
    are skipped; any other file must be CSV or Parquet.
    """
    files = [f for f in io.list_files(uri) if not f.endswith(schemas.TRUTH_SUFFIX)]
    if not files:
        raise InvalidInputError(f"no raw loan files under {uri}")
    unknown = [f for f in files if not f.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)]
    if unknown:
        raise InvalidInputError(
            f"cannot read {unknown[0]}: raw loans must be .csv, .csv.gz or .parquet files"
        )
    return files


def check_raw_files(files: list[str]) -> None:
    """What can be checked without Spark, so before its start-up: every CSV file starts
    with the raw header, every local Parquet file has a readable footer naming the raw
    columns. (Parquet column types, and Parquet on S3, are checked when Spark reads.)

    A corrupt Parquet file must not reach Spark's footer reader, which logs a JVM stack
    trace before it fails.
    """
    for file in files:
        if file.endswith(CSV_SUFFIXES):
            _check_csv_header(file)
        elif not io.is_s3(file):
            _check_parquet_footer(file)


def read_raw_loans(spark: SparkSession, uri: str) -> DataFrame:
    """Raw loans under ``uri`` with the 24 contract columns, typed as declared, plus
    ``_corrupt_record`` (the raw line of CSV rows that did not fit the schema)."""
    return read_raw_files(spark, list_raw_files(uri))


def read_raw_files(spark: SparkSession, files: list[str]) -> DataFrame:
    """``read_raw_loans`` for files already listed by ``list_raw_files``."""
    csv_files = [f for f in files if f.endswith(CSV_SUFFIXES)]
    parquet_files = [f for f in files if f.endswith(PARQUET_SUFFIXES)]
    check_raw_files(files)
    frames = []
    if csv_files:
        frames.append(
            spark.read.schema(READ_SCHEMA)
            .option("header", "true")
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT_RECORD_COLUMN)
            .csv(csv_files)
        )
    if parquet_files:
        _check_parquet_schema(spark, parquet_files)
        frames.append(
            spark.read.schema(RAW_SCHEMA)
            .parquet(*parquet_files)
            .withColumn(CORRUPT_RECORD_COLUMN, F.lit(None).cast(T.StringType()))
        )
    raw = frames[0]
    for frame in frames[1:]:
        raw = raw.unionByName(frame)
    return raw


def _first_line(uri: str) -> str:
    """The first line of a (possibly gzipped) text file, without reading all of it."""
    if io.is_s3(uri):
        import boto3  # imported here: a local run never pays for it

        bucket, key = io.split_s3(uri)
        # A header is a few hundred bytes; gzip needs the whole stream, so read it all.
        kwargs = {} if uri.endswith(".gz") else {"Range": "bytes=0-65535"}
        body = boto3.client("s3").get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
        data = gzip.decompress(body) if uri.endswith(".gz") else body
        return data.decode("utf-8", errors="replace").partition("\n")[0]
    opener = gzip.open if uri.endswith(".gz") else open
    with opener(uri, "rt", encoding="utf-8", errors="replace") as handle:
        return handle.readline()


def _check_csv_header(uri: str) -> None:
    line = _first_line(uri).strip().lstrip("\ufeff")
    if not line:
        raise InvalidInputError(f"{uri} is empty: expected a CSV header and loan rows")
    header = [name.strip().strip('"').lower() for name in line.split(",")]
    if tuple(header) != schemas.RAW_LOAN_COLUMN_NAMES:
        raise InvalidInputError(
            f"{uri} does not have the raw loan columns: {_describe_difference(header)}"
        )


def _check_parquet_footer(uri: str) -> None:
    try:
        names = pq.read_schema(uri).names
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInputError(f"{uri} is not a readable Parquet file") from exc
    names = [name.lower() for name in names]
    if sorted(names) != sorted(schemas.RAW_LOAN_COLUMN_NAMES):
        raise InvalidInputError(
            f"{uri} does not have the raw loan columns: {_describe_difference(names)}"
        )


def _check_parquet_schema(spark: SparkSession, files: list[str]) -> None:
    """Every Parquet file holds the 24 raw columns with their declared types."""
    expected = {field.name: field.dataType for field in RAW_SCHEMA.fields}
    for file in files:
        try:
            # Reads the footer only: the schema the file declares, nothing inferred.
            actual = spark.read.parquet(file).schema
        except Exception as exc:  # a corrupt or empty file surfaces as a JVM error
            raise InvalidInputError(f"{file} is not a readable Parquet file") from exc
        names = [field.name.lower() for field in actual.fields]
        if sorted(names) != sorted(expected):
            raise InvalidInputError(
                f"{file} does not have the raw loan columns: {_describe_difference(names)}"
            )
        wrong = [
            f"{field.name} is {field.dataType.simpleString()}, "
            f"expected {expected[field.name.lower()].simpleString()}"
            for field in actual.fields
            if field.dataType != expected[field.name.lower()]
        ]
        if wrong:
            raise InvalidInputError(f"{file} has wrong column types: {'; '.join(wrong)}")


def _describe_difference(names: list[str]) -> str:
    expected = schemas.RAW_LOAN_COLUMN_NAMES
    missing = [name for name in expected if name not in names]
    extra = [name for name in names if name not in expected]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected {', '.join(extra)}")
    if not parts:
        parts.append(f"columns out of order, expected {', '.join(expected)}")
    return "; ".join(parts)
