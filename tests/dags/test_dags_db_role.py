"""The AWS database roles of the DAGs and of the monitoring exporter (``app.db.ROLE_GRANTS``, created by
``terraform/scripts/bootstrap_db_roles.py``): granted with the project's own ``grant_role`` on the test's own
migrated tables, to roles of the test's own (created and dropped here, on the running stack's Postgres), they read
what their code reads - the DAG's drift cool-down query on the jobs table included - and write nothing."""

from __future__ import annotations

import importlib.util
import json
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg2.errors
import pytest
from pydantic import SecretStr

from sfmlops_dag_utils.drift import recent_training

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("airflow") is not None, reason="main suite only (its stack fixture)"),
]


@pytest.fixture
def login_role(stack) -> Iterator[Callable[[str], tuple[str, str]]]:  # app.config.Settings
    """Factory of LOGIN roles of this test (name, password), dropped with whatever was granted to them."""
    from app.stack.postgres import Postgres

    pg = Postgres(stack)
    made: list[str] = []

    def make(component: str) -> tuple[str, str]:
        name, password = f"t_{component}_{secrets.token_hex(4)}", secrets.token_hex(16)
        admin = pg.superuser_conn(stack.pg_database)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", (password,))
        admin.close()
        made.append(name)
        return name, password

    yield make
    admin = pg.superuser_conn(stack.pg_database)
    admin.autocommit = True
    with admin.cursor() as cur:
        for name in made:
            cur.execute(f"DROP OWNED BY {name}")
            cur.execute(f"DROP ROLE {name}")
    admin.close()


def _as(settings, role: tuple[str, str]):
    return settings.model_copy(update={"pg_user": role[0], "pg_password": SecretStr(role[1])})


@pytest.mark.parametrize("component", ["dags", "monitoring"])
def test_component_role_reads_the_jobs_table_and_writes_nothing(stack, isolated_tables, login_role, component: str) -> None:
    from app.db import connect, grant_role, granted_relations, transaction

    s = isolated_tables(stack, "g")
    now = datetime.now(UTC)
    with transaction(s) as conn, conn.cursor() as cur:  # one finished weekly training, as the API records it
        cur.execute(f"INSERT INTO {s.table_api_clients} (name) VALUES ('dag-role-test') RETURNING id")
        (client,) = cur.fetchone()
        cur.execute(
            f"INSERT INTO {s.table_training_jobs} (id, client_id, kind, params, entrypoint, ray_submission_id, state,"
            " request_hash, created_at, started_at) VALUES ('job-1', %s, 'all', %s::jsonb, 'python x.py', 'job-1',"
            " 'SUCCEEDED', %s, %s, %s)",
            (client, json.dumps({"kind": "all"}), "0" * 64, now - timedelta(days=1), now - timedelta(days=1)),
        )
    role = login_role(component)
    with transaction(s) as conn:
        granted = grant_role(conn, s, component, role[0])
    assert granted["write"] == [] and s.table_training_jobs in granted["read"]
    assert sorted(granted["read"]) == sorted(granted_relations(s, component, "read"))  # every table it reads exists

    reader = _as(s, role)
    conn = connect(reader)
    try:
        if component == "dags":  # the drift cool-down's own query, on the DAG's connection
            assert recent_training(conn, s.table_training_jobs, {"kind": "all"}, 7)["id"] == "job-1"
        with conn.cursor() as cur:
            for table in granted["read"]:
                cur.execute(f"SELECT count(*) FROM {table}")
        conn.rollback()
        for statement in (
            f"INSERT INTO {s.table_training_jobs} (id, client_id, kind, entrypoint, ray_submission_id, request_hash)"
            f" VALUES ('job-2', {client}, 'all', 'x', 'job-2', '{'0' * 64}')",
            f"UPDATE {s.table_training_jobs} SET state = 'FAILED'",
            f"DELETE FROM {s.table_training_jobs}",
            f"SELECT count(*) FROM {s.table_api_keys}",  # nor any table it was not given
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
                cur.execute(statement)
            conn.rollback()
    finally:
        conn.close()
    with connect(s) as check, check.cursor() as cur:
        cur.execute(f"SELECT id, state FROM {s.table_training_jobs}")
        assert cur.fetchall() == [("job-1", "SUCCEEDED")]
    check.close()


def test_unknown_component_is_refused(stack) -> None:
    from app.db import grant_role

    with pytest.raises(ValueError, match="unknown component 'airflow'; known: .*dags.*monitoring"):
        grant_role(None, stack, "airflow", "nobody")  # refused before any statement
