"""DAG tests. The ``test_af_*`` modules run inside ``.venv-airflow`` (Airflow is not installed in ``.venv``).

In the main suite (``.venv``) they are not collected; ``test_airflow_suite.py`` runs them with the
Airflow virtualenv's pytest in a subprocess instead. Run them directly with::

    .venv-airflow/bin/python -m pytest tests/dags --confcutdir=tests/dags -p no:cacheprovider

(``--confcutdir`` keeps the main suite's ``tests/conftest.py``, which imports ``app``, out.)
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
IN_AIRFLOW_VENV = importlib.util.find_spec("airflow") is not None

if not IN_AIRFLOW_VENV:
    collect_ignore_glob = ["test_af_*.py"]
else:
    # Airflow reads its configuration when first imported: point it at a private home and our DAGs first.
    _home = os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="sfmlops-airflow-test-"))
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_home}/airflow.db")
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS_DIR)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

    import pytest

    @pytest.fixture(scope="session")
    def airflow_db() -> str:
        """A migrated metadata database (SQLite under the test AIRFLOW_HOME); ``dag.test()`` needs it."""
        from airflow.utils import db

        db.initdb()
        return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]

    @pytest.fixture(scope="session")
    def dagbag():  # airflow.dag_processing.dagbag.BundleDagBag
        """The DAGs parsed as Airflow 3 parses a DAG bundle: the bundle's root (``dags/``, which holds
        ``sfmlops_dag_utils``) on ``sys.path``, as the dag-processor and the task runner put it (and MWAA)."""
        from airflow.dag_processing.dagbag import BundleDagBag

        return BundleDagBag(dag_folder=str(DAGS_DIR), bundle_path=DAGS_DIR, bundle_name="dags-folder")

    @pytest.fixture
    def loopback_server():  # -> Callable[[type[BaseHTTPRequestHandler]], str]
        """Serve a stand-in HTTP service (a ``BaseHTTPRequestHandler`` class) on a free loopback port for the
        test: ``url = loopback_server(Handler)``; stopped afterwards."""
        import threading
        from http.server import HTTPServer

        servers: list[tuple[HTTPServer, threading.Thread]] = []

        def start(handler: type) -> str:
            server = HTTPServer(("127.0.0.1", 0), handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            servers.append((server, thread))
            return f"http://127.0.0.1:{server.server_address[1]}"

        yield start
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(5)
