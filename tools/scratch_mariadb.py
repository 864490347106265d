"""A throwaway MariaDB server: its own data directory, socket and loopback port, started and stopped (or
restarted) at will, so that tests and chaos scenarios can restart "the MIS server" or shorten its
`wait_timeout` without touching the shared server at 127.0.0.1:3306."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ScratchMariaDB:
    """One private mariadbd, root without a password, reachable at 127.0.0.1:<port>."""

    def __init__(self, *options: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="scratch-mariadb-"))
        self.port = free_port()
        self.options = list(options)
        self.process: subprocess.Popen | None = None
        subprocess.run([INSTALL_DB, "--no-defaults", f"--datadir={self.root / 'data'}", "--user=root", "--skip-test-db",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=120)

    def url(self, database: str = "") -> str:
        """The SQLAlchemy URL of a database on this server."""
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str | None = None, **kwargs: object) -> pymysql.Connection:
        """A plain PyMySQL connection (autocommit)."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", database=database, autocommit=True,
                               connect_timeout=3, **kwargs)  # type: ignore[arg-type]

    def start(self, wait: float = 60.0) -> "ScratchMariaDB":
        """Start the server (again, on the same data and port) and wait until it answers."""
        self.process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.root / 'data'}", f"--port={self.port}", "--bind-address=127.0.0.1",
             f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}", "--user=root",
             f"--log-error={self.root / 'error.log'}", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
             *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.connect().close()
                return self
            except pymysql.MySQLError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mariadbd exited: {(self.root / 'error.log').read_text()[-2000:]}")
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not answer in time")

    def stop(self) -> None:
        """Stop the server (clients see their connections go away)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, pause: float = 2.0) -> None:
        """Stop, wait `pause` seconds, start again: a server restart as an upgrade does it."""
        self.stop()
        time.sleep(pause)
        self.start()

    def create_database(self, name: str) -> str:
        """A fresh utf8mb4 database; returns its URL."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()
        return self.url(name)

    def close(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ScratchMariaDB":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
