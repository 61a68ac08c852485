"""A PostgreSQL cluster of a test's own, made with the machine's PostgreSQL
binaries, so that a test may stop and start it (never the shared one).

    with PrivatePostgres.create() as cluster:   # initdb + start; stop + remove on exit
        url = cluster.url                        # postgresql://postgres@127.0.0.1:PORT/postgres
        cluster.stop()                           # pg_ctl stop -m fast
        cluster.start()

initdb refuses to run as root: as root, the binaries run as the `postgres`
user (runuser), in a directory that user owns. The cluster listens on
127.0.0.1 only, on a free port, with its socket in its own directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

# Latest version first.
_BIN_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
_OS_USER = "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    def __init__(self, bin_dir: Path, directory: Path, run_as: list[str]) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.logfile = directory / "postgres.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run_as = run_as

    @classmethod
    def create(cls) -> PrivatePostgres:
        """A new, started cluster; skips the test where there are no binaries."""
        if not _BIN_DIRS or not Path(_BIN_DIRS[0], "pg_ctl").exists():
            pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        run_as: list[str] = []
        directory = Path(tempfile.mkdtemp(prefix="orch-private-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(_OS_USER)
            except KeyError:
                shutil.rmtree(directory)
                pytest.skip("running as root and there is no `postgres` user for initdb")
            os.chown(directory, user.pw_uid, user.pw_gid)
            run_as = ["runuser", "-u", _OS_USER, "--"]
        cluster = cls(Path(_BIN_DIRS[0]), directory, run_as)
        try:
            cluster._run(
                "initdb",
                "-D",
                str(cluster.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            )
            cluster.start()
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [*self._run_as, str(self.bin_dir / program), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        """pg_ctl start, returning once the cluster accepts connections."""
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.logfile), "-w", "start"
        )

    def stop(self) -> None:
        """pg_ctl stop -m fast: sessions are ended, the server shuts down."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        """Stops the cluster if it runs, and deletes its files."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()
