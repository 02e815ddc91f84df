"""Mosquitto and InfluxDB started from Debian's binaries under a local folder.

The one way the project runs its own broker and database outside Docker:
`make demo`, the test fixtures and the benchmarks all use these classes.
Servers bind to 127.0.0.1 only; each class stops only the process it started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from core.settings import MqttTarget
from devices.broker.dynsec_bootstrap import ADMIN_USER, find_plugin, write_config
from devices.broker.provisioning import DynsecProvisioner

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
HOST: Final = "127.0.0.1"


class LocalStackError(RuntimeError):
    """A local server could not start; the message says what to install or check."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        msg = f"{binary} not found: install Debian's {package} package (apt-get install {package})"
        raise LocalStackError(msg)
    return path


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            msg = f"{proc.args!r} exited with {proc.returncode}:\n{tail}"
            raise LocalStackError(msg)
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    msg = f"{proc.args!r} did not open port {port} within {timeout} s; see {log}"
    raise LocalStackError(msg)


class _Server:
    """A child process with a log file; stop() ends only this PID."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "server.log"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        assert self.proc is not None
        _wait_port(self.port, self.proc, self.log, 30.0)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()


class Mosquitto(_Server):
    """Mosquitto with the dynamic security plugin: per-device accounts, persistence on."""

    SERVICE_USER: Final = "carewatch"
    LOADGEN_USER: Final = "loadgen"
    ADMIN_USER: Final = ADMIN_USER

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        users: Iterable[tuple[str, str]] = (),
        service_password: str = "carewatch-test",
        loadgen_password: str = "loadgen-test",
        admin_password: str = "carewatch-admin-test",
    ) -> None:
        super().__init__(folder, port or free_port())
        self.binary = _require("mosquitto", "mosquitto")
        self.plugin = find_plugin()
        self.service_password = service_password
        self.loadgen_password = loadgen_password
        self.admin_password = admin_password
        self.conf = folder / "mosquitto.conf"
        self.dynsec = folder / "dynamic-security.json"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data").mkdir(exist_ok=True)
        self.write_config()
        self.set_users(users)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The broker's URL for `user` (the service's by default), password included."""
        user = user or self.SERVICE_USER
        if password is None:
            password = {
                self.SERVICE_USER: self.service_password,
                self.LOADGEN_USER: self.loadgen_password,
                self.ADMIN_USER: self.admin_password,
            }[user]
        return f"mqtt://{user}:{password}@{HOST}:{self.port}"

    def admin_target(self) -> MqttTarget:
        """The dynamic security admin's target, for provisioning."""
        return MqttTarget.from_url(self.url(self.ADMIN_USER))

    def write_config(self) -> None:
        """Write mosquitto.conf: one listener on 127.0.0.1, dynamic security, persistence."""
        self.conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    # As root, mosquitto would switch to the `mosquitto` user, which
                    # cannot read a private temporary folder; stay who started it.
                    *(["user root"] if os.geteuid() == 0 else []),
                    f"listener {self.port} {HOST}",
                    "allow_anonymous false",
                    # Accounts, roles and ACLs live in the plugin's file (no
                    # password_file/acl_file: they would still admit a device the
                    # plugin no longer knows). See mosquitto/README.md.
                    f"plugin {self.plugin}",
                    f"plugin_opt_config_file {self.dynsec}",
                    "persistence true",
                    f"persistence_location {self.folder / 'data'}/",
                    "autosave_interval 60",
                    # The default of 1000 would drop QoS 1 messages queued for a slow
                    # or absent ingester; its Receive Maximum bounds what is in flight.
                    "max_queued_messages 0",
                    "max_queued_bytes 0",
                    "max_inflight_messages 0",
                    "max_packet_size 16384",
                    "persistent_client_expiration 14d",
                    "log_dest stdout",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "",
                ]
            )
        )

    def set_users(self, users: Iterable[tuple[str, str]]) -> None:
        """Give these devices accounts (the fixed accounts too): in the file, or live if running."""
        users = list(users)
        if self.proc is not None and self.proc.poll() is None:
            self.add_users(users)
            return
        # The plugin reads its file only at start; a stopped broker gets it rewritten.
        write_config(
            self.dynsec,
            admin_password=self.admin_password,
            service_password=self.service_password,
            loadgen_password=self.loadgen_password,
            devices=users,
        )

    def add_users(self, users: Iterable[tuple[str, str]]) -> None:
        """Add device accounts, through the plugin if the broker runs (no reload needed)."""
        users = list(users)
        if self.proc is None or self.proc.poll() is not None:
            self.set_users(users)
            return

        async def provision() -> None:
            # Tests reuse short fixed passwords; the API's are random and long.
            async with DynsecProvisioner(self.admin_target(), min_password_length=1) as admin:
                for user, password in users:
                    await admin.add_device(user, password)

        asyncio.run(provision())

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.conf)]


class InfluxDB(_Server):
    """InfluxDB 1.x (`influxd`, Debian's influxdb package) with its data in the folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port or free_port())
        self.binary = _require("influxd", "influxdb")
        self.rpc_port = free_port()
        self.conf = folder / "influxdb.conf"
        folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    "reporting-disabled = true",
                    f'bind-address = "{HOST}:{self.rpc_port}"',
                    "[meta]",
                    f'  dir = "{folder / "meta"}"',
                    "  logging-enabled = false",
                    "[data]",
                    f'  dir = "{folder / "data"}"',
                    f'  wal-dir = "{folder / "wal"}"',
                    "  query-log-enabled = false",
                    "[monitor]",
                    "  store-enabled = false",
                    "[subscriber]",
                    "  enabled = false",
                    "[continuous_queries]",
                    "  enabled = false",
                    "[http]",
                    f'  bind-address = "{HOST}:{self.port}"',
                    "  log-enabled = false",
                    "  pprof-enabled = false",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        """The base URL of InfluxDB's HTTP API."""
        return f"http://{HOST}:{self.port}"

    def _command(self) -> list[str]:
        return [self.binary, "-config", str(self.conf)]

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                msg = f"influxd exited with {self.proc.returncode}:\n{tail}"
                raise LocalStackError(msg)
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                    if resp.status < 300:
                        return
            except OSError:
                time.sleep(0.1)
        msg = f"influxd did not answer /ping on port {self.port} within 60 s; see {self.log}"
        raise LocalStackError(msg)


def _postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        msg = f"PostgreSQL's {name} not found: install Debian's postgresql package"
        raise LocalStackError(msg)
    return str(found[-1])


class PostgreSQL(_Server):
    """A throwaway PostgreSQL cluster (Debian's postgresql package) in the folder.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    `postgres` user the package creates, and the server runs as that user.
    """

    USER: Final = "carewatch"
    PASSWORD: Final = "carewatch-test"

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port or free_port())
        self.data = folder / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
        folder.mkdir(parents=True, exist_ok=True)
        if not (self.data / "PG_VERSION").exists():
            self._init_cluster()

    def _init_cluster(self) -> None:
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.PASSWORD + "\n")
        if self._as:
            shutil.chown(self.folder, "postgres")
            shutil.chown(pwfile, "postgres")
        subprocess.run(
            [
                *self._as,
                _postgres_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                self.USER,
                "--pwfile",
                str(pwfile),
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ],
            check=True,
            capture_output=True,
        )
        pwfile.unlink()

    def _command(self) -> list[str]:
        return [
            *self._as,
            _postgres_bin("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"unix_socket_directories={self.folder}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ]

    def _wait_ready(self) -> None:
        # An open port is not yet a server that takes connections (it may still be
        # starting, or be the last moments of a previous one): ask it.
        super()._wait_ready()
        deadline = time.monotonic() + 30.0
        while True:
            ready = subprocess.run(
                [_postgres_bin("pg_isready"), "-h", HOST, "-p", str(self.port), "-t", "2"],
                check=False,
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline or (
                self.proc is not None and self.proc.poll() is not None
            ):
                msg = f"PostgreSQL on port {self.port} did not accept connections; see {self.log}"
                raise LocalStackError(msg)
            time.sleep(0.1)

    def start(self) -> None:
        """Start the cluster, as `postgres` when run as root."""
        if self._as:
            shutil.chown(self.folder, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        super().start()

    def stop(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Fast shutdown through pg_ctl: as root, a signal would reach only `runuser`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            super().stop(kill=True)
            return
        subprocess.run(
            [
                *self._as,
                _postgres_bin("pg_ctl"),
                "stop",
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-t",
                str(int(timeout)),
            ],
            check=False,
            capture_output=True,
        )
        super().stop(timeout=timeout)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this cluster."""
        return f"postgresql+asyncpg://{self.USER}:{self.PASSWORD}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh database; returns its SQLAlchemy URL."""
        env = dict(os.environ, PGPASSWORD=self.PASSWORD)
        subprocess.run(
            [_postgres_bin("createdb"), "-h", HOST, "-p", str(self.port), "-U", self.USER, name],
            check=True,
            capture_output=True,
            env=env,
        )
        return self.url(name)
