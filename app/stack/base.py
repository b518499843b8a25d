"""Process management shared by every local service: pidfiles, logs, ports, health, stop.

A service is started as a detached process group whose leader pid goes to ``<state>/run/<name>.pid``
and whose output goes to ``<state>/logs/<name>.log``. ``stop`` signals that group and any descendant
that moved to another group, and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Container
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


class StackError(RuntimeError):
    """A local service could not be prepared, started, checked or stopped; the message says why."""


class PortInUseError(StackError):
    """A port a service needs is held by a process the stack did not start."""


@dataclass
class ServiceStatus:
    """One row of ``sfmlops status``."""

    name: str
    address: str
    running: bool
    healthy: bool
    pid: int | None
    rss_bytes: int
    detail: str = ""


def port_holder(host: str, port: int) -> str | None:
    """Describe the process listening on ``host:port`` (``"pid 123 (java)"``), or None if the port is free."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) != 0:
                # Nothing accepts: check that we could bind it (a half-closed listener still blocks).
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        probe.bind((host, port))
                        return None
                    except OSError:
                        pass
    except OSError:
        return None
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid:
                    try:
                        name = psutil.Process(conn.pid).name()
                    except psutil.Error:
                        name = "?"
                    return f"pid {conn.pid} ({name})"
                return "an unknown process"
    except psutil.Error:
        pass
    return "an unknown process"


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants that are still alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and its descendants.

    Uses the proportional set size where the OS reports it, so pages shared between the processes
    (Ray's forked dashboard modules, Python libraries) are counted once, not once per process.
    """
    total = 0
    for proc in process_tree(pid):
        try:
            try:
                total += proc.memory_full_info().pss
            except (AttributeError, psutil.AccessDenied):
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Poll ``check`` until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: BLE001 - a health probe may raise anything while starting
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Service:
    """Base class of a local service. Subclasses set ``name`` and implement the hooks."""

    name: str = "service"
    #: seconds to wait for health after start
    start_timeout: float = 60.0
    #: signal that asks the service to shut down quickly and cleanly
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 20.0
    #: starts to try when the process exits during start-up
    start_attempts: int = 1

    def __init__(self, settings: Settings):
        self.settings = settings

    # -- paths -----------------------------------------------------------------------------
    @property
    def pidfile(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.settings.logs_dir / f"{self.name}.log"

    # -- hooks for subclasses ---------------------------------------------------------------
    def ports(self) -> list[int]:
        """Ports the service binds on ``settings.bind_host``."""
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"{self.settings.bind_host}:{self.ports()[0]}"

    def prepare(self) -> None:
        """One-time preparation before the first start (download, initdb, format...)."""

    def command(self) -> list[str]:
        """The command line of the (foreground) service process."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """Extra environment variables for the process."""
        return {}

    def preexec_user(self) -> tuple[int, int] | None:
        """(uid, gid) to run as, or None for the current user."""
        return None

    def healthy(self) -> bool:
        """A real end-to-end probe of the service."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Idempotent set-up once healthy (create database, buckets, topics)."""

    def expected_cmd_fragment(self) -> str:
        """A string the command line of our process contains (guards against pid reuse)."""
        return self.command()[0]

    # -- lifecycle --------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid from our pidfile if that process is alive and is ours."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            return None
        return pid if self.expected_cmd_fragment() in cmdline else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def check_ports(self) -> None:
        """Raise :class:`PortInUseError` naming the port and its holder if a port is taken."""
        for port in self.ports():
            holder = port_holder(self.settings.bind_host, port)
            if holder:
                raise PortInUseError(
                    f"{self.name}: port {port} on {self.settings.bind_host} is already in use by {holder}; "
                    f"stop that process or choose another port (see .env.example)"
                )

    def spawn(self) -> int:
        """Start the process detached, with its log and pidfile; return its pid."""
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.environment()}
        user = self.preexec_user()
        with open(self.logfile, "ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(  # fixed argv built from settings
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.settings.state_dir),
                start_new_session=True,
                user=user[0] if user else None,
                group=user[1] if user else None,
                extra_groups=[] if user else None,
            )
        self.pidfile.write_text(str(proc.pid))
        return proc.pid

    def start(self) -> str:
        """Start (or reuse) the service and wait until healthy. Returns ``"started"`` or ``"reused"``."""
        if self.is_running():
            if not wait_until(self.healthy, self.start_timeout):
                raise StackError(f"{self.name} is running (pid {self.pid()}) but not healthy; see {self.logfile}")
            self.after_start()
            return "reused"
        self.check_ports()
        self.prepare()
        for attempt in range(1, self.start_attempts + 1):
            pid = self.spawn()
            try:
                self.wait_ready(pid)
                return "started"
            except StackError:
                if attempt == self.start_attempts or self.pid() is not None:
                    raise
                # It exited during start-up (e.g. a start-up timeout on a loaded machine): try again.
        raise AssertionError("unreachable")

    def wait_ready(self, pid: int) -> None:
        """Wait for health after :meth:`spawn`, then run :meth:`after_start`."""

        def ready() -> bool:
            if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                raise StackError(f"{self.name} exited during start-up; last log lines:\n{tail(self.logfile)}")
            return self.healthy()

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                if ready():
                    break
            except StackError:
                self.pidfile.unlink(missing_ok=True)
                raise
            except Exception:  # noqa: BLE001 - probes raise while the service boots
                pass
            if time.monotonic() >= deadline:
                raise StackError(
                    f"{self.name} did not become healthy within {self.start_timeout:.0f}s; "
                    f"last log lines of {self.logfile}:\n{tail(self.logfile)}"
                )
            time.sleep(0.5)
        self.after_start()

    def stop(self) -> bool:
        """Stop the process group we started (and its descendants). Returns True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        procs = process_tree(pid)
        try:
            os.killpg(pid, self.stop_signal)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, self.stop_signal)
        _, alive = psutil.wait_procs(procs, timeout=self.stop_timeout)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.pidfile.unlink(missing_ok=True)
        return True

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = False
        detail = ""
        if pid is not None:
            # A loaded machine can miss one probe: ask up to three times before reporting unhealthy.
            for attempt in range(3):
                try:
                    healthy = bool(self.healthy())
                except Exception as exc:  # noqa: BLE001 - status reports, never raises
                    detail = str(exc)[:80]
                if healthy:
                    detail = ""
                    break
                time.sleep(1.0 + attempt)
        return ServiceStatus(
            name=self.name,
            address=self.address,
            running=pid is not None,
            healthy=healthy,
            pid=pid,
            rss_bytes=tree_rss(pid) if pid else 0,
            detail=detail,
        )


def free_ports(n: int = 1, host: str = "127.0.0.1", avoid: Container[int] = ()) -> list[int]:
    """``n`` distinct TCP ports on ``host`` that nothing holds now and that are not in ``avoid``.

    Each port is bound and released at once, so another process may take it before the caller does: bind it soon.

    Raises:
        StackError: when ``n`` such ports are not found.
    """
    ports: list[int] = []
    for _ in range(50 * n):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in avoid and port not in ports:
            ports.append(port)
            if len(ports) == n:
                return ports
    raise StackError(f"found only {len(ports)} of {n} free ports on {host}")


def free_port(host: str = "127.0.0.1", avoid: Container[int] = ()) -> int:
    """One TCP port on ``host`` that nothing holds now and that is not in ``avoid`` (see :func:`free_ports`)."""
    return free_ports(1, host, avoid)[0]


def wait_listening(host: str, port: int, proc: subprocess.Popen | None = None, timeout_s: float = 60) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises:
        StackError: when ``proc`` (the process meant to listen) exits first, or after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"the process exited with {proc.returncode} before listening on {host}:{port}")
        if tcp_open(host, port, timeout=0.5):
            return
        if time.monotonic() >= deadline:
            raise StackError(f"nothing listened on {host}:{port} within {timeout_s} s")
        time.sleep(0.2)


def tcp_open(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 5.0) -> bool:
    """True if GET ``url`` answers 2xx."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback URL from settings
        return 200 <= resp.status < 300
