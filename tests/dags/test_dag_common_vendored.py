"""The DAG bundle carries ``app/common`` verbatim (``make dags-vendor``): one JobState, one job-result parser,
one API client for the API, the UI, the demo and the DAGs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "app" / "common"
COPY = ROOT / "dags" / "sfmlops_dag_utils" / "common"


def test_dag_bundle_copy_of_app_common_is_identical() -> None:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.py")}
    copy = {p.name: p.read_bytes() for p in COPY.glob("*.py")}
    assert sorted(source) == sorted(copy), "run `make dags-vendor`"
    stale = [name for name in source if source[name] != copy[name]]
    assert stale == [], f"dags/sfmlops_dag_utils/common/{stale} differ from app/common: run `make dags-vendor`"


def test_app_common_imports_only_the_standard_library_httpx_and_itself() -> None:
    """Nothing of ``app`` (absent on MWAA): absolute imports are the standard library or httpx, the rest relative."""
    import sys

    for path in sorted(SOURCE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root in sys.stdlib_module_names or root in ("__future__", "httpx"), f"{path.name} imports {name}"
