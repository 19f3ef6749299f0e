"""A throwaway PostgreSQL server for the test run, from the binaries on the machine.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root the server runs as the
``postgres`` system user in a directory it owns. The server can be stopped and
started again, which the outage tests use.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and "
        "PATH); `make prereqs` installs them"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One server in a temporary directory; ``url`` reaches it over loopback TCP."""

    def __init__(self) -> None:
        # Nothing here can fail: what can (no binaries, no postgres user) raises
        # RuntimeError from init() for the caller to report.
        self._bindir: Path | None = None
        self.root = Path(tempfile.mkdtemp(prefix="credit-risk-pg-"))
        self.datadir = self.root / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = _find_bindir()
        return self._bindir

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> None:
        if self._as_root:
            try:
                shutil.chown(self.root, user="postgres", group="postgres")
            except LookupError:
                raise RuntimeError(
                    "running as root needs a `postgres` system user to own the server "
                    "(the postgresql package creates it)"
                ) from None
            self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
