"""The model registry: immutable model versions and a champion pointer.

Layout (DESIGN.md "Model registry"), under a local directory or an ``s3://`` root::

    <root>/<model_name>/<version>/model.ubj        XGBoost native model
                                  metadata.json    written last: a version exists once it has one
                                  baseline.joblib  the logistic baseline, for audit only
                                  model_card.md, roc.png, calibration.png
    <root>/<model_name>/champion.json              which version serves, and the ones before
    <root>/<model_name>/release.json               the model release in progress, if any
    <root>/<model_name>/<version>/releases/<id>/   each release's report

Versions are immutable: every file of a version is created with "fail if it
exists" (``O_EXCL`` locally, ``If-None-Match: *`` on S3), so a second write to a
version fails however the writers interleave. The champion pointer changes only by
``promote``, a compare-and-swap on ``champion.json`` (``If-Match`` on its ETag on
S3, a file lock and atomic rename locally): of two writers who read the same
champion, one wins and the other gets ``ConcurrentUpdateError``. The release
record changes the same way: it tells every serving function which candidate to
score beside the champion, in which stage and at which share
(``credit_risk.serving.assignment``), and one release runs at a time.

Loading checks the model file's sha256 against the metadata and refuses a
mismatch; it builds the serving ``ModelPackage`` from the native file only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from credit_risk.errors import CreditRiskError, InvalidInputError

if TYPE_CHECKING:
    from credit_risk.model.package import ModelPackage

MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
BASELINE_FILE = "baseline.joblib"
CARD_FILE = "model_card.md"
CHAMPION_FILE = "champion.json"
RELEASE_FILE = "release.json"
# The field every record of a pointer file has.
_RECORD_KEYS = {CHAMPION_FILE: "version", RELEASE_FILE: "model_version"}
REPORTS_DIR = "releases"
# Champions kept in champion.json's history: what rollbacks can return to.
HISTORY_LENGTH = 20
# Stages of a release: the candidate scores beside the champion and is never
# returned (shadow), answers the customers of its share (canary), or no longer
# takes part (ended: promoted or rolled back).
SHADOW, CANARY, ENDED = "shadow", "canary", "ended"
# How an ended release ended.
PROMOTED, ROLLED_BACK = "promoted", "rolled_back"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# S3's bucket naming rules, checked here so that a typo reads as one clear line
# rather than botocore's parameter validation error.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class VersionExistsError(CreditRiskError):
    """A version is written once; this one already exists (or was half written)."""


class ModelNotFoundError(CreditRiskError):
    """No such version, or no champion yet."""


class IntegrityError(CreditRiskError):
    """A stored file does not match the checksum recorded in its metadata."""


class ConcurrentUpdateError(CreditRiskError):
    """The champion changed between reading it and replacing it."""


@dataclass(frozen=True)
class ReleaseState:
    """The release record: which candidate serves beside the champion, and how."""

    release_id: str
    model_version: str
    champion: str | None
    stage: str
    percent: float
    started_at: str
    updated_at: str
    outcome: str | None = None
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.stage in (SHADOW, CANARY)

    @property
    def candidate_percent(self) -> float:
        """The share of customers the candidate answers (none in shadow)."""
        return self.percent if self.stage == CANARY else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseState:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def new_version(model_sha256: str, now: datetime | None = None) -> str:
    """A version name that sorts by time and names the model it holds."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{model_sha256[:8]}"


class _Store(Protocol):
    """Keyed blobs with create-only and compare-and-swap writes."""

    def read(self, key: str) -> tuple[bytes, str] | None: ...
    def create(self, key: str, data: bytes) -> None: ...
    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None: ...
    def put(self, key: str, data: bytes) -> None: ...
    def children(self, prefix: str) -> list[str]: ...


class _LocalStore:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = (self.root / key).read_bytes()
        except FileNotFoundError:
            return None
        return data, sha256(data)

    def create(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("xb") as file:  # O_CREAT | O_EXCL: exactly one creator wins
                file.write(data)
        except FileExistsError:
            raise VersionExistsError(f"{path} already exists") from None

    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked(path.with_name(path.name + ".lock")):
            current = self.read(key)
            if (current[1] if current else None) != expected_tag:
                raise ConcurrentUpdateError(f"{path} changed while it was being replaced")
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temp, path)  # readers see the old file or the new one, never half

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)

    @staticmethod
    @contextlib.contextmanager
    def _locked(lock_path: Path) -> Iterator[None]:
        import fcntl  # POSIX only, like the Lambda runtime; imported where it is needed

        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, even if the process dies
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def children(self, prefix: str) -> list[str]:
        path = self.root / prefix
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if p.is_dir())


class _S3Store:
    def __init__(self, uri: str, client: Any = None) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not _BUCKET.match(bucket):
            raise InvalidInputError(f"not an S3 URI with a valid bucket name: {uri!r}")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if client is None:
            import boto3  # only when the registry is on S3

            client = boto3.client("s3")
        self.client = client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def read(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read(), response["ETag"]

    def create(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except self.client.exceptions.ClientError as exc:
            if _precondition_failed(exc):
                raise VersionExistsError(f"s3://{self.bucket}/{self._key(key)} exists") from None
            raise

    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None:
        condition = {"IfMatch": expected_tag} if expected_tag else {"IfNoneMatch": "*"}
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except self.client.exceptions.ClientError as exc:
            if _precondition_failed(exc) or _error_code(exc) == "NoSuchKey":
                raise ConcurrentUpdateError(
                    f"s3://{self.bucket}/{self._key(key)} changed while it was being replaced"
                ) from None
            raise

    def put(self, key: str, data: bytes) -> None:
        content_type = "text/html" if key.endswith(".html") else "application/json"
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type
        )

    def children(self, prefix: str) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        base = self._key(prefix).rstrip("/") + "/"
        names = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            names += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)


def _error_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def _precondition_failed(exc: Exception) -> bool:
    # 412 when the condition fails; 409 when a concurrent conditional write to the
    # same key is in flight (S3 then lets exactly one of them succeed).
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInputError(
            f"invalid {kind} {name!r}: letters, digits, '.', '_' and '-' only, "
            "starting with a letter or digit"
        )
    return name


class Registry:
    """The versions of one model under one registry root.

    ``s3_client`` is the boto3 S3 client of an ``s3://`` root (default: one for the
    environment's region); a failover passes the client of the region it checks.
    """

    def __init__(self, root: str, model_name: str, *, s3_client: Any = None) -> None:
        self.root = root.rstrip("/")
        self.model_name = _check_name("model name", model_name)
        # The URI as given: stripping "s3://" of its slashes would leave no bucket.
        self._store: _Store = (
            _S3Store(root, s3_client) if root.startswith("s3://") else _LocalStore(root)
        )

    def uri(self, version: str | None = None, name: str | None = None) -> str:
        parts = [self.root, self.model_name, *(p for p in (version, name) if p)]
        return "/".join(parts)

    def _record(self, data: bytes, name: str) -> dict[str, Any]:
        """The record a pointer file (champion, release) holds; IntegrityError when it
        is not a JSON object with a version (damaged, or edited by hand)."""
        try:
            record = json.loads(data)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get(_RECORD_KEYS[name]), str):
            raise IntegrityError(
                f"{self.uri(name=name)} is not a {name.removesuffix('.json')} record: "
                "damaged or edited by hand"
            )
        return record

    def _key(self, version: str, name: str) -> str:
        return f"{self.model_name}/{_check_name('version', version)}/{name}"

    # --- writing ---------------------------------------------------------------
    def check_new_version(self, version: str) -> None:
        """Fails unless ``version`` is a valid name never written before: a training
        run checks this before it trains, not after."""
        if self._store.read(self._key(version, MODEL_FILE)) is not None:
            raise VersionExistsError(
                f"version {version} of {self.model_name} already exists in {self.root}"
            )

    def publish(
        self,
        version: str,
        model_bytes: bytes,
        metadata: dict[str, Any],
        files: dict[str, bytes] | None = None,
    ) -> dict[str, Any]:
        """Writes a new version; returns its metadata as stored (with checksums).

        The model file goes first and ``metadata.json`` last: a version becomes
        visible only complete, and the first create already fails if the version
        was ever written, by this writer or another.
        """
        files = dict(files or {})
        for reserved in (MODEL_FILE, METADATA_FILE):
            if reserved in files:
                raise InvalidInputError(f"{reserved} is written by the registry itself")
        stored = {
            **metadata,
            "model_name": self.model_name,
            "version": _check_name("version", version),
            "sha256": sha256(model_bytes),
            "artifacts": {name: sha256(data) for name, data in sorted(files.items())},
        }
        self._store.create(self._key(version, MODEL_FILE), model_bytes)
        for name, data in sorted(files.items()):
            self._store.create(self._key(version, _check_name("file name", name)), data)
        body = json.dumps(stored, indent=2, sort_keys=True, allow_nan=False).encode()
        self._store.create(self._key(version, METADATA_FILE), body)
        return stored

    # --- reading ---------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete versions (those with metadata), oldest first by name."""
        return [
            v
            for v in self._store.children(self.model_name)
            if _NAME.match(v) and self._store.read(self._key(v, METADATA_FILE)) is not None
        ]

    def metadata(self, version: str) -> dict[str, Any]:
        found = self._store.read(self._key(version, METADATA_FILE))
        if found is None:
            raise ModelNotFoundError(f"no version {version!r} of {self.model_name} in {self.root}")
        try:
            return json.loads(found[0])
        except ValueError:
            raise IntegrityError(f"{self.uri(version, METADATA_FILE)} is not valid JSON") from None

    def read_file(self, version: str, name: str) -> bytes:
        """One file of a version, checked against the checksum in its metadata."""
        metadata = self.metadata(version)
        expected = metadata["sha256"] if name == MODEL_FILE else metadata["artifacts"].get(name)
        if expected is None:
            raise ModelNotFoundError(f"version {version} has no file {name!r}")
        found = self._store.read(self._key(version, name))
        if found is None:
            raise IntegrityError(f"{self.uri(version, name)} is listed but missing")
        if sha256(found[0]) != expected:
            raise IntegrityError(
                f"{self.uri(version, name)} does not match its recorded sha256; refusing it"
            )
        return found[0]

    def load(self, version: str | None = None) -> ModelPackage:
        """The serving package of ``version``, or of the champion when None."""
        from credit_risk.model.package import ModelPackage

        version = version or self.champion_version()
        if version is None:
            raise ModelNotFoundError(f"{self.model_name} has no champion in {self.root} yet")
        return ModelPackage.from_bytes(self.read_file(version, MODEL_FILE), self.metadata(version))

    # --- champion ----------------------------------------------------------------
    def champion(self) -> dict[str, Any] | None:
        found = self._store.read(f"{self.model_name}/{CHAMPION_FILE}")
        return self._record(found[0], CHAMPION_FILE) if found else None

    def champion_version(self) -> str | None:
        current = self.champion()
        return current["version"] if current else None

    def promote(
        self, version: str, *, expected_champion: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Makes ``version`` the champion.

        ``expected_champion``, when given, is the version the caller believes is
        serving; the promote fails if another one is. Concurrent promotes never
        interleave: the write is conditional on the pointer the promote read. A
        version whose gate failed is refused unless ``force``.
        """
        metadata = self.metadata(version)
        gate = metadata.get("gate", {})
        if not force and not gate.get("passed", False):
            raise InvalidInputError(
                f"version {version} did not pass the evaluation gate; use force to promote it"
            )
        key = f"{self.model_name}/{CHAMPION_FILE}"
        found = self._store.read(key)
        current = self._record(found[0], CHAMPION_FILE) if found else None
        current_version = current["version"] if current else None
        if expected_champion is not None and expected_champion != current_version:
            raise ConcurrentUpdateError(
                f"the champion is {current_version}, not {expected_champion} as expected"
            )
        history = _history(current)
        record = {
            "model_name": self.model_name,
            "version": version,
            "sha256": metadata["sha256"],
            "promoted_at": _now(),
            "previous": current_version,
            "history": [*history, current_version] if current_version else history,
            "forced": force and not gate.get("passed", False),
        }
        record["history"] = record["history"][-HISTORY_LENGTH:]
        self._store.swap(key, _json(record), found[1] if found else None)
        return record

    def roll_back(self, reason: str, *, expected_champion: str | None = None) -> dict[str, Any]:
        """Makes the champion before the current one the champion again, in one write.

        Each rollback steps one champion further back (the history is kept in
        ``champion.json``), so rolling back twice never returns to the version the
        first rollback removed.
        """
        key = f"{self.model_name}/{CHAMPION_FILE}"
        found = self._store.read(key)
        current = self._record(found[0], CHAMPION_FILE) if found else None
        if current is None:
            raise InvalidInputError(f"{self.model_name} has no champion to roll back")
        if expected_champion is not None and expected_champion != current["version"]:
            raise ConcurrentUpdateError(
                f"the champion is {current['version']}, not {expected_champion} as expected"
            )
        history = _history(current)
        if not history:
            raise InvalidInputError(
                f"{current['version']} is the first champion of {self.model_name}: "
                "there is no earlier one to roll back to"
            )
        version = history[-1]
        metadata = self.metadata(version)
        record = {
            "model_name": self.model_name,
            "version": version,
            "sha256": metadata["sha256"],
            "promoted_at": _now(),
            "previous": current["version"],
            "history": history[:-1],
            "forced": False,
            "rolled_back_from": current["version"],
            "reason": reason,
        }
        self._store.swap(key, _json(record), found[1])
        return record

    # --- releases ----------------------------------------------------------------
    def release_state(self) -> ReleaseState | None:
        """The release record as last written (an ended release too), or None."""
        found = self._store.read(f"{self.model_name}/{RELEASE_FILE}")
        return ReleaseState.from_dict(self._record(found[0], RELEASE_FILE)) if found else None

    def active_release(self) -> ReleaseState | None:
        state = self.release_state()
        return state if state is not None and state.active else None

    def open_release(
        self, release_id: str, model_version: str, *, force: bool = False
    ) -> ReleaseState:
        """Starts a release of ``model_version`` in shadow; the same release opened
        again is returned as it is (a retry), another release in progress refuses it.
        A version that did not pass its evaluation gate is refused unless ``force``,
        before any customer is scored by it (``promote`` would refuse it at the end)."""
        gate = self.metadata(model_version).get("gate", {})  # an unknown version fails here
        if not force and not gate.get("passed", False):
            raise InvalidInputError(
                f"version {model_version} did not pass the evaluation gate; it is not released"
            )
        key = f"{self.model_name}/{RELEASE_FILE}"
        found = self._store.read(key)
        current = ReleaseState.from_dict(self._record(found[0], RELEASE_FILE)) if found else None
        if current is not None and current.release_id == release_id:
            return current
        if current is not None and current.active:
            raise ConcurrentUpdateError(
                f"release {current.release_id} of {current.model_version} is in progress: "
                "one model release at a time"
            )
        now = _now()
        state = ReleaseState(
            release_id=_check_name("release id", release_id),
            model_version=model_version,
            champion=self.champion_version(),
            stage=SHADOW,
            percent=0.0,
            started_at=now,
            updated_at=now,
        )
        self._store.swap(key, _json(state.as_dict()), found[1] if found else None)
        return state

    def move_release(self, release_id: str, stage: str, percent: float) -> ReleaseState:
        """Moves release ``release_id`` to ``stage`` at ``percent`` of customers."""
        if stage not in (SHADOW, CANARY):
            raise InvalidInputError(f"a release moves to {SHADOW} or {CANARY}, not {stage!r}")
        if not 0.0 <= percent <= 100.0 or (stage == SHADOW and percent):
            raise InvalidInputError(f"{percent:g}% is not a share for the {stage} stage")
        current, tag = self._release_of(release_id)
        if not current.active:
            raise InvalidInputError(f"release {release_id} has ended ({current.outcome})")
        state = ReleaseState(
            **{**current.as_dict(), "stage": stage, "percent": float(percent), "updated_at": _now()}
        )
        self._store.swap(f"{self.model_name}/{RELEASE_FILE}", _json(state.as_dict()), tag)
        return state

    def close_release(self, release_id: str, outcome: str, reason: str) -> ReleaseState:
        """Ends release ``release_id`` (promoted or rolled back): the serving functions
        stop scoring its candidate. Closing an ended release changes nothing."""
        current, tag = self._release_of(release_id)
        if not current.active:
            return current
        state = ReleaseState(
            **{
                **current.as_dict(),
                "stage": ENDED,
                "updated_at": _now(),
                "outcome": outcome,
                "reason": reason,
            }
        )
        self._store.swap(f"{self.model_name}/{RELEASE_FILE}", _json(state.as_dict()), tag)
        return state

    def _release_of(self, release_id: str) -> tuple[ReleaseState, str]:
        found = self._store.read(f"{self.model_name}/{RELEASE_FILE}")
        current = ReleaseState.from_dict(self._record(found[0], RELEASE_FILE)) if found else None
        if current is None or current.release_id != release_id:
            raise ConcurrentUpdateError(
                f"release {release_id} is not the release on record "
                f"({current.release_id if current else 'none'})"
            )
        return current, found[1]

    def _report_key(self, version: str, release_id: str, name: str) -> str:
        folder = f"{REPORTS_DIR}/{_check_name('release id', release_id)}"
        return self._key(version, f"{folder}/{_check_name('file name', name)}")

    def write_report(self, version: str, release_id: str, name: str, data: bytes) -> str:
        """Stores one file of a release's report beside the model version; its URI."""
        self.metadata(version)
        key = self._report_key(version, release_id, name)
        self._store.put(key, data)
        return f"{self.root}/{key}"

    def read_report(self, version: str, release_id: str, name: str) -> bytes | None:
        """One file of a release's report, or None when it was never written."""
        found = self._store.read(self._report_key(version, release_id, name))
        return found[0] if found else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, indent=2, sort_keys=True).encode()


def _history(champion: dict[str, Any] | None) -> list[str]:
    """The champions before ``champion``, oldest first (a record written before the
    history was kept knows only its predecessor)."""
    if champion is None:
        return []
    if "history" in champion:
        return list(champion["history"])
    return [champion["previous"]] if champion.get("previous") else []
