"""The local stack's exposure (issue 13, items 13-15): loopback only, no trusted database connection, a
private socket folder, any password works on every connection path, a rotated secret is re-read.

Everything runs on private services (own state folder under tmp, free ports) started through the stack's
own modules; the shared stack is not touched (its emulator is used only to hold test secrets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import pwd
import stat
import subprocess
import uuid
from pathlib import Path

import psutil
import psycopg2
import pytest
from test_stack import private_settings

from app.config import Settings
from app.stack.base import free_port, process_tree
from app.stack.emulator import Emulator
from app.stack.postgres import Postgres

pytestmark = pytest.mark.integration

#: A password of the kind RDS generates: space, both quotes, backslash, '=', '%', '@', ':', '/', '#'.
HOSTILE_PASSWORD = "p a'ss\\w\"rd=%41@:/#x"


def non_loopback_listeners(pids: list[int]) -> list[str]:
    """Every listening TCP socket of the processes (and their descendants) that is not on loopback."""
    found = []
    for proc in {p.pid: p for pid in pids for p in process_tree(pid)}.values():
        try:
            conns = proc.net_connections(kind="tcp")
            name = proc.name()
        except psutil.Error:
            continue
        for conn in conns:
            if conn.status != psutil.CONN_LISTEN:
                continue
            addr = ipaddress.ip_address(conn.laddr.ip)
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
                addr = addr.ipv4_mapped
            if not addr.is_loopback:
                found.append(f"pid {proc.pid} ({name}) {conn.laddr.ip}:{conn.laddr.port}")
    return found


def stack_pids(settings: Settings) -> list[int]:
    """The pids recorded in the stack's pidfiles (``<state>/run/*.pid``)."""
    pids = []
    for pidfile in sorted(Path(settings.run_dir).glob("*.pid")):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except (OSError, ValueError):
            continue
    return pids


def test_private_emulator_listens_on_loopback_only(stack, tmp_path, monkeypatch) -> None:
    """MiniStack's IoT mTLS broker bound 0.0.0.0:8883 whatever BIND_HOST said."""
    import urllib.request

    s = private_settings(stack, tmp_path)
    # Side listeners get their own free port here (a stack started before this fix may hold 8883, and a
    # port MiniStack cannot bind only logs a line): the emulator must open none of them off loopback.
    monkeypatch.setenv("IOT_MTLS_PORT", str(free_port()))
    emulator = Emulator(s)
    try:
        emulator.start()
        # /_ministack/ready waits for the side listeners (the mTLS one starts after the HTTP port).
        with urllib.request.urlopen(f"{emulator.address}/_ministack/ready", timeout=30) as resp:
            assert resp.status == 200
        pids = stack_pids(s)
        assert pids == [emulator.pid()]
        assert non_loopback_listeners(pids) == []
    finally:
        emulator.stop()


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_pg(tmp_path_factory, stack) -> Settings:
    """A private PostgreSQL whose application role has a password with every character DSNs trip on."""
    from pydantic import SecretStr

    s = stack.model_copy(update={
        "state_dir": tmp_path_factory.mktemp("pg") / "state", "pg_port": free_port(),
        "pg_password": SecretStr(HOSTILE_PASSWORD),
    })
    for folder in (s.state_dir, s.logs_dir, s.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    pg = Postgres(s)
    pg.start()  # initdb, role with that password, databases, migrations through app.db.connect
    yield s
    pg.stop()


def _refused(**params) -> str:
    with pytest.raises(psycopg2.OperationalError) as exc:
        psycopg2.connect(connect_timeout=5, **params).close()
    return str(exc.value)


def _as_other_user(s: Settings, *args: str) -> subprocess.CompletedProcess:
    """psql run as the OS user ``nobody`` (any local user), without a password."""
    return subprocess.run(
        [str(Postgres(s).bin_dir / "psql"), "-X", "-w", "-p", str(s.pg_port), "-d", "postgres", "-Atc", "SELECT current_user", *args],
        user="nobody", capture_output=True, text=True, timeout=60, cwd="/", env={"PATH": os.environ["PATH"]},
    )


def assert_no_trusted_connection(s: Settings) -> None:
    pg = Postgres(s)
    socket_dir = pg.socket_dir
    # The socket folder is private to the server's OS user.
    mode = stat.S_IMODE(socket_dir.stat().st_mode)
    assert mode == 0o700, f"{socket_dir} has mode {mode:o}"
    owner = pg.preexec_user()
    assert socket_dir.stat().st_uid == (owner[0] if owner else os.geteuid())
    # Over TCP nobody gets in without the password, the superuser included (it has none).
    for user in ("postgres", s.pg_user):
        assert "password" in _refused(host="127.0.0.1", port=s.pg_port, user=user, dbname="postgres")
    assert "password" in _refused(host="127.0.0.1", port=s.pg_port, user=s.pg_user, dbname="postgres",
                                  password="sfmlops-local")
    # Through the socket the application role needs its password too.
    assert "password" in _refused(host=str(socket_dir), port=s.pg_port, user=s.pg_user, dbname="postgres")
    # The stack's own OS user is the superuser by peer authentication (how the stack administers it).
    with pg.superuser_conn() as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
        assert cur.fetchone() == ("postgres", True)
    conn.close()
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            return
        # Any other local user: the socket cannot be reached, and TCP wants a password.
        for host in (str(socket_dir), "127.0.0.1"):
            for user in ("postgres", s.pg_user):
                result = _as_other_user(s, "-h", host, "-U", user)
                assert result.returncode != 0 and result.stdout == "", (host, user, result.stdout)
                assert ("Permission denied" in result.stderr) if host != "127.0.0.1" else ("password" in result.stderr)


def test_local_postgres_trusts_no_connection_and_keeps_its_socket_private(private_pg) -> None:
    assert_no_trusted_connection(private_pg)


def test_cluster_of_the_old_trusting_layout_is_migrated_on_next_start(private_pg) -> None:
    """A developer's .local/pg from before: `trust` for local connections and a 0755 socket folder."""
    s = private_pg
    pg = Postgres(s)
    assert pg.stop()
    (pg.data_dir / "pg_hba.conf").write_text(
        "local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
    )
    os.chmod(pg.socket_dir, 0o755)
    assert pg.start() == "started"
    assert_no_trusted_connection(s)
    # the data survived: the application role still owns the migrated schema
    from app.db import connect

    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, to_regclass(%s) IS NOT NULL", (s.table_sales,))
        assert cur.fetchone() == (s.pg_user, True)
    conn.close()


def test_a_password_with_quotes_spaces_and_backslashes_works_on_every_connection_path(private_pg) -> None:
    s = private_pg
    assert s.pg_password.get_secret_value() == HOSTILE_PASSWORD
    # app.db.connect (CLI, migrations, ingest driver, forecasting)
    from app.db import connect

    with connect(s) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (s.pg_user,)
    conn.close()
    # the DSN string handed to subprocesses
    import psycopg2

    with psycopg2.connect(s.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (s.pg_user,)
    conn.close()
    # the Spark executors' JDBC staging writer: the password is a property as it is, never in the URL
    from app.ingest import sink

    url, props = sink.jdbc_target(s)
    assert props["password"] == HOSTILE_PASSWORD and HOSTILE_PASSWORD not in url and props["user"] == s.pg_user
    # the API's pool
    from app.api import db as api_db

    api_db.close_pools()
    try:
        with api_db.connection(s) as conn, api_db.cursor(conn) as cur:
            cur.execute("SELECT current_user AS u, current_setting('application_name') AS app")
            assert cur.fetchone() == {"u": s.pg_user, "app": "sfmlops-api"}
    finally:
        api_db.close_pools()
    # MLflow's backend store URI: SQLAlchemy decodes it, alembic's config keeps it, MLflow's schema migrates
    from mlflow.store.db.utils import _get_alembic_config, create_sqlalchemy_engine
    from sqlalchemy import text

    from app.stack.mlflow import backend_store_uri

    uri = backend_store_uri(s)
    assert _get_alembic_config(uri).get_main_option("sqlalchemy.url") == uri
    engine = create_sqlalchemy_engine(uri)
    try:
        with engine.connect() as db:
            assert db.execute(text("SELECT current_user, current_database()")).one() == (s.pg_user, s.mlflow_database)
    finally:
        engine.dispose()


# --- Secrets Manager: a rotated database secret is re-read on an authentication failure ------------


def test_rotated_database_secret_is_re_read_on_authentication_failure(private_pg, stack, monkeypatch) -> None:
    from app.api import db as api_db
    from app.db import connect

    pg = Postgres(private_pg)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.aws_secret_access_key.get_secret_value())
    client = stack.boto3_client("secretsmanager")
    role = f"rot_{uuid.uuid4().hex[:8]}"
    first, second = "Rq1 'first' \\ secret", "Rq2 \"second\" \\ secret"
    arn = client.create_secret(Name=f"sfmlops-test-{role}", SecretString=json.dumps({"username": role, "password": first}))["ARN"]
    admin = pg.superuser_conn()
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (first,))
        s = Settings(_env_file=None, profile="aws", aws_endpoint_url=stack.aws_endpoint_url, pg_port=private_pg.pg_port,
                     pg_database="postgres", pg_secret_arn=arn, api_key_pepper="pepper-9f8e7d6c")
        assert (s.pg_user, s.pg_password.get_secret_value()) == (role, first)
        # rotation: the database and the secret change after start-up
        with admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {role} PASSWORD %s", (second,))
        client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": role, "password": second}))
        with connect(s) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == (role,)
        conn.close()
        assert s.pg_password.get_secret_value() == second
        # the API's pool goes through the same helper
        with admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {role} PASSWORD %s", (first,))
        client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": role, "password": first}))
        api_db.close_pools()
        with api_db.connection(s) as conn, api_db.cursor(conn) as cur:
            cur.execute("SELECT current_user AS u")
            assert cur.fetchone() == {"u": role}
        api_db.close_pools()
        # and so does its async pool (the hot route, the key-set version)
        with admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {role} PASSWORD %s", (second,))
        client.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": role, "password": second}))
        assert asyncio.run(api_db.read_one(s, "SELECT current_user", {})) == (role,)
        assert s.pg_password.get_secret_value() == second
        api_db.close_pools()
        # a wrong password that the secret does not fix still fails, with the server's message
        with admin.cursor() as cur:
            cur.execute(f"ALTER ROLE {role} PASSWORD 'nobody-knows-this-one'")
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            connect(s)
    finally:
        api_db.close_pools()
        with admin.cursor() as cur:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


# --- per-component database roles of the AWS deployment (terraform/scripts/bootstrap_db_roles.py) ---------


def test_bootstrap_gives_each_component_its_own_least_privilege_role_and_secret(private_pg, stack, monkeypatch) -> None:
    from app.db import bootstrap_roles, connect

    pg = Postgres(private_pg)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.aws_secret_access_key.get_secret_value())
    client = stack.boto3_client("secretsmanager")
    tag = uuid.uuid4().hex[:6]
    # as Terraform creates them: one secret per role, no value
    roles = {c: {"username": f"t_{c}_{tag}", "secret_arn": client.create_secret(Name=f"sfmlops-test-db-{c}-{tag}")["ARN"]}
             for c in ("api", "ray", "spark", "mlflow")}
    admin = pg.superuser_conn()
    admin.autocommit = True
    master = private_pg  # the schema owner with CREATEROLE, as RDS' master user is
    with admin.cursor() as cur:
        cur.execute(f"ALTER ROLE {master.pg_user} CREATEROLE CREATEDB")

    def as_role(component: str) -> Settings:
        return Settings(_env_file=None, profile="aws", aws_endpoint_url=stack.aws_endpoint_url, pg_port=master.pg_port,
                        pg_secret_arn=roles[component]["secret_arn"], api_key_pepper="pepper-9f8e7d6c")

    def privileges(s: Settings, table: str) -> set[str]:
        with connect(s) as conn, conn.cursor() as cur:
            cur.execute("SELECT p FROM unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) p"
                        " WHERE has_table_privilege(%s, p)", (table,))
            out = {r[0] for r in cur.fetchall()}
        conn.close()
        return out

    try:
        assert bootstrap_roles(master, roles) == dict.fromkeys(roles, "created")
        secrets = {c: json.loads(client.get_secret_value(SecretId=r["secret_arn"])["SecretString"]) for c, r in roles.items()}
        assert {c: v["username"] for c, v in secrets.items()} == {c: r["username"] for c, r in roles.items()}
        assert len({v["password"] for v in secrets.values()}) == 4  # a password per role
        m = master
        rw, ro = {"SELECT", "INSERT", "UPDATE", "DELETE"}, {"SELECT"}
        api, ray, spark = as_role("api"), as_role("ray"), as_role("spark")
        assert privileges(api, m.table_api_keys) == rw and privileges(api, f"{m.table_api_keys}_version") == rw
        assert privileges(api, m.table_training_jobs) == rw and privileges(api, m.table_forecasts) == ro
        assert privileges(api, m.table_sales) == ro and privileges(api, m.table_dead_letter) == set()
        assert privileges(ray, m.table_forecasts) == rw and privileges(ray, m.table_sales) == ro
        assert privileges(ray, m.table_api_keys) == set() and privileges(ray, m.table_training_jobs) == set()
        assert privileges(spark, m.table_sales) == rw and privileges(spark, m.table_ledger) == rw
        assert privileges(spark, m.table_stores) == ro and privileges(spark, m.table_api_keys) == set()
        # a refused statement really fails; only the ingestion may create (its staging) tables
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            with connect(api) as conn, conn.cursor() as cur:
                cur.execute(f"DELETE FROM {m.table_sales}")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            with connect(ray) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE TABLE t_{tag} (x int)")
        with connect(spark) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE UNLOGGED TABLE {m.table_ingest_staging}_{tag} (LIKE {m.table_ingest_staging})")
            cur.execute(f"DROP TABLE {m.table_ingest_staging}_{tag}")
        conn.close()
        # MLflow's role owns its database
        with admin.cursor() as cur:
            cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (m.mlflow_database,))
            assert cur.fetchone() == (roles["mlflow"]["username"],)
        # again: passwords kept; with --rotate: new ones, and a running component re-reads its secret
        assert bootstrap_roles(master, roles) == dict.fromkeys(roles, "kept")
        assert bootstrap_roles(master, roles, rotate=True) == dict.fromkeys(roles, "rotated")
        assert api.pg_password.get_secret_value() == secrets["api"]["password"]  # still the old one
        assert privileges(api, m.table_api_keys) == rw
        assert api.pg_password.get_secret_value() != secrets["api"]["password"]
        with pytest.raises(ValueError, match="unknown components"):
            bootstrap_roles(master, {"airflow": roles["api"]})
    finally:
        with admin.cursor() as cur:
            cur.execute(f"ALTER DATABASE {master.mlflow_database} OWNER TO {master.pg_user}")
            cur.execute(f"ALTER ROLE {master.pg_user} NOCREATEROLE NOCREATEDB")
        admin.close()
        app_db = pg.superuser_conn(master.pg_database)  # grants live in the application database
        app_db.autocommit = True
        with app_db.cursor() as cur:
            for r in roles.values():
                if _role_exists(cur, r["username"]):
                    cur.execute(f"DROP OWNED BY {r['username']}")
                    cur.execute(f"DROP ROLE {r['username']}")
        app_db.close()
        for r in roles.values():
            client.delete_secret(SecretId=r["secret_arn"], ForceDeleteWithoutRecovery=True)


def _role_exists(cur, name: str) -> bool:
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    return cur.fetchone() is not None


def test_every_relation_of_the_migrations_is_covered_by_a_component_role(private_pg) -> None:
    """A migration that adds a table must say which component may use it (app.db.ROLE_GRANTS), else that
    component fails on AWS only."""
    from app.db import ROLE_GRANTS, connect, granted_relations

    covered = {name for c in ROLE_GRANTS for access in ("write", "read") for name in granted_relations(private_pg, c, access)}
    with connect(private_pg) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
            " AND c.relkind IN ('r', 'p', 'S', 'v', 'm') AND NOT EXISTS (SELECT 1 FROM pg_depend d"
            " WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))"  # identity/serial sequences go with their table
        )
        relations = {r[0] for r in cur.fetchall()}
    conn.close()
    assert sorted(relations - covered) == []
