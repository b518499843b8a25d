"""The one set of port and process-measurement helpers (``app.stack.base``, ``app.forecasting.executor``) that the
stack, the benchmarks and the tests share (issue 19: no copies in tests/ or app/)."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import PROJECT_ROOT
from app.forecasting.executor import peak_rss_mb
from app.stack.base import StackError, free_port, free_ports, wait_listening


def test_free_ports_are_distinct_bindable_and_outside_avoid() -> None:
    avoid = range(10002, 20000)
    ports = free_ports(5, avoid=avoid)
    assert len(set(ports)) == 5
    assert not [p for p in ports if p in avoid]
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # nothing holds it
    assert free_port(avoid=avoid) not in avoid


def test_free_ports_names_what_it_could_not_find() -> None:
    with pytest.raises(StackError, match=r"found only 0 of 1 free ports on 127.0.0.1"):
        free_ports(1, avoid=range(65536))


def test_wait_listening_returns_once_something_accepts() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        wait_listening("127.0.0.1", server.getsockname()[1], timeout_s=5)


def test_wait_listening_reports_a_process_that_exits_first() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])  # fixed argv
    proc.wait()
    with pytest.raises(StackError, match=rf"exited with 3 before listening on 127.0.0.1:{port}"):
        wait_listening("127.0.0.1", port, proc, timeout_s=30)


def test_wait_listening_gives_up_naming_the_address() -> None:
    port = free_port()
    with pytest.raises(StackError, match=rf"nothing listened on 127.0.0.1:{port} within 0 s"):
        wait_listening("127.0.0.1", port, timeout_s=0)


def test_peak_rss_counts_a_larger_child_only_when_asked() -> None:
    own = peak_rss_mb()
    assert own > 0
    target = int(own) + 32  # a child that peaks 32 MiB above this process (touching every page it allocates)
    subprocess.run([sys.executable, "-c", f"b = bytearray({target} * 2**20); b[::4096] = b'x' * len(b[::4096])"], check=True)
    assert peak_rss_mb() < target <= peak_rss_mb(include_children=True)


def _defined(name: str, roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in root.rglob("*.py"):
            if ".venv" in path.parts:
                continue
            for node in ast.parse(path.read_text(), str(path)).body:  # module-level functions
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
                    found.append(str(path.relative_to(PROJECT_ROOT)))
    return sorted(found)


@pytest.mark.parametrize(
    ("names", "home"),
    [
        (("free_port", "_free_port", "free_ports", "_free_ports"), ["app/bench/fake_cluster.py", "app/stack/base.py", "app/stack/base.py"]),
        (("_peak_rss_mb", "peak_rss_mb"), ["app/forecasting/executor.py"]),
        (("_wait_ready", "wait_listening"), ["app/stack/base.py"]),
    ],
)
def test_each_helper_is_defined_once(names: tuple[str, ...], home: list[str]) -> None:
    """``fake_cluster.free_ports`` stays as the Ray-port-range variant (it calls ``app.stack.base.free_ports``)."""
    roots = [PROJECT_ROOT / "app", PROJECT_ROOT / "tests"]
    assert sorted(f for name in names for f in _defined(name, roots)) == sorted(home)
