"""PostgreSQL access: connection parameters and the re-read of a rotated secret, the schema migrations in
``app/sql/`` and the per-component database roles.

What belongs where: this module is the one place that builds a connection's parameters (:func:`conn_params`,
for psycopg2 and psycopg 3 alike) and re-reads a rotated database secret when the server refuses the
credentials (:func:`connect` for psycopg2, :func:`connect_psycopg` / :func:`aconnect_psycopg` for psycopg 3,
one rule: :func:`refreshed_after`); it also applies the migrations and grants the roles. ``app/api/db.py``
holds only the API's connection pools (psycopg_pool, whose connections are opened here) and the mapping of
their errors onto API answers.

Migration files are applied in name order on every ``sfmlops up``; each must be idempotent
(``CREATE TABLE IF NOT EXISTS`` ...). Table names are ``str.format`` placeholders filled from the
settings (``{table_sales}``), so literal braces are doubled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:  # pragma: no cover
    from psycopg2.extensions import connection

    from app.config import Settings

SQL_DIR = Path(__file__).resolve().parent / "sql"


#: libpq's message when the server refused the credentials (psycopg2 sets no SQLSTATE on a failed connect).
_AUTH_FAILED = ("password authentication failed", "authentication failed for user", "no password supplied")
#: libpq parameters every connection gets unless the caller names them.
DEFAULT_OPTIONS: dict[str, Any] = {"connect_timeout": 5, "application_name": "sfmlops"}
T = TypeVar("T")


def is_auth_failure(exc: BaseException) -> bool:
    """Whether a connection error (either driver) means the server refused the role's credentials."""
    text = str(exc).lower()
    return any(marker in text for marker in _AUTH_FAILED)


def conn_params(settings: Settings, database: str | None = None, **options: Any) -> dict[str, Any]:
    """Keyword parameters of a connection as the application role, for ``psycopg2.connect(**params)`` and
    ``psycopg.connect(**params)`` alike: the settings' current credentials (a re-read secret's included), never
    a parsed string, plus :data:`DEFAULT_OPTIONS` and ``options`` (libpq parameters such as
    ``application_name``, or psycopg 3's ``autocommit``)."""
    return {**settings.pg_params(database), **DEFAULT_OPTIONS, **options}


def refreshed_after(settings: Settings, exc: BaseException) -> bool:
    """Whether to connect once more after the failed connect ``exc``: the server refused the credentials and
    ``SFMLOPS_PG_SECRET_ARN``'s secret, read again, holds other ones (it was rotated since start-up)."""
    return is_auth_failure(exc) and settings.refresh_pg_secret()


def _connect_retrying(settings: Settings, open_: Callable[[dict[str, Any]], T], database: str | None,
                      options: dict[str, Any]) -> T:
    try:
        return open_(conn_params(settings, database, **options))
    except Exception as exc:  # either driver's OperationalError; anything else is no authentication failure
        if not refreshed_after(settings, exc):
            raise
    return open_(conn_params(settings, database, **options))


def connect(settings: Settings, database: str | None = None, **options: Any) -> connection:
    """A new psycopg2 connection as the application role (:func:`conn_params`).

    On an authentication failure with ``SFMLOPS_PG_SECRET_ARN`` set, the secret is read again (it may
    have been rotated since start-up) and the connection retried once with the new credentials.

    Args:
        settings: The settings; their ``pg_user``/``pg_password`` are updated by a refresh.
        database: Database name (default ``settings.pg_database``).
        options: Further libpq parameters (``connect_timeout``, ``application_name``...).
    """
    import psycopg2

    return _connect_retrying(settings, lambda params: psycopg2.connect(**params), database, options)


def connect_psycopg(settings: Settings, open_: Callable[..., T], **options: Any) -> T:
    """A new psycopg 3 connection, ``open_(**params)`` (``psycopg.Connection.connect`` or a subclass's), as the
    application role (:func:`conn_params`), with :func:`connect`'s re-read of a rotated secret."""
    return _connect_retrying(settings, lambda params: open_(**params), None, options)


async def aconnect_psycopg(settings: Settings, open_: Callable[..., Awaitable[T]], **options: Any) -> T:
    """:func:`connect_psycopg` for asyncio: ``await open_(**params)`` (``psycopg.AsyncConnection.connect`` or a
    subclass's); the secret is re-read in a worker thread (it calls Secrets Manager)."""
    import asyncio

    try:
        return await open_(**conn_params(settings, **options))
    except Exception as exc:  # either driver's OperationalError: see _connect_retrying
        if not await asyncio.to_thread(refreshed_after, settings, exc):
            raise
    return await open_(**conn_params(settings, **options))


@contextmanager
def transaction(settings: Settings) -> Iterator[connection]:
    """A connection in one transaction: committed on success, rolled back on error, always closed."""
    conn = connect(settings)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def table_names(settings: Settings) -> dict[str, str]:
    """Every ``table_*`` setting, for formatting SQL templates."""
    return {name: getattr(settings, name) for name in type(settings).model_fields if name.startswith("table_")}


def render(template: str, settings: Settings) -> str:
    """Fill a SQL template's table placeholders from the settings."""
    return template.format(**table_names(settings))


def migration_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_migrations(settings: Settings) -> list[str]:
    """Apply every migration file in order, each in its own transaction. Returns the file names."""
    applied = []
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(81726354)")  # one migrator at a time
        for path in migration_files():
            cur.execute(render(path.read_text(), settings))
            applied.append(path.name)
    return applied


#: Least-privilege database roles of the AWS deployment, one per component (Terraform creates one Secrets
#: Manager secret per role: modules/database ``roles``; ``terraform/scripts/bootstrap_db_roles.py`` creates the
#: roles, their passwords and these grants). Names are templates of the table settings, like the migrations'
#: (``{table_api_keys}_version``); relations a migration has not created are skipped. A migration that adds a
#: relation adds it here too (tests check that every relation of the schema is covered). The local profile
#: keeps its one application role.
ROLE_GRANTS: dict[str, dict[str, object]] = {
    # The API Lambda: clients, keys and jobs; reads forecasts, stores and sales (health, limits, views).
    "api": {
        "write": ("{table_api_clients}", "{table_api_keys}", "{table_api_keys}_version", "{table_training_jobs}",
                  "{table_accuracy}",  # live accuracy: POST /v1/accuracy/score writes the scores
                  "{table_alerts}",  # Alertmanager's webhook (POST /v1/alerts/webhook) records alerts
                  "{table_planning}"),  # planning uploads (POST /v1/planning, /v1/planning/csv)
        "read": ("{table_forecasts}", "{table_forecasts}_runs", "{table_stores}", "{table_sales}"),
        "create": False,
    },
    # Ray jobs: training reads sales and stores; the batch forecast writes forecasts and their runs.
    "ray": {
        "write": ("{table_forecasts}", "{table_forecasts}_runs", "{table_forecasts}_run_seq"),
        "read": ("{table_sales}", "{table_stores}", "{table_planning}"),  # the plan: known-future inputs of the forecast
        "create": False,
    },
    # The Spark ingestion: sales, dead letters, the ledger and the staging template; its per-query staging
    # tables it creates (CREATE on the schema) and so owns.
    "spark": {
        "write": ("{table_sales}", "{table_dead_letter}", "{table_ledger}", "{table_ledger}_partitions", "{table_ingest_staging}"),
        "read": ("{table_stores}",),
        "create": True,
    },
    # The Airflow DAGs (MWAA's sfmlops_postgres connection): the ingest and forecast checks, the drift cool-down.
    "dags": {
        "write": (),
        "read": ("{table_sales}", "{table_dead_letter}", "{table_stores}", "{table_forecasts}", "{table_training_jobs}"),
        "create": False,
    },
    # The monitoring exporter on the Ray head (app/monitoring/exporter.py): what it reads at every scrape.
    "monitoring": {
        "write": (),
        "read": ("{table_sales}", "{table_stores}", "{table_forecasts}", "{table_ledger}", "{table_training_jobs}",
                 "{table_accuracy}"),
        "create": False,
    },
}
WRITE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"  # no TRUNCATE/DDL: staging tables belong to the spark role


def _existing(cur, names: list[str], kinds: str) -> list[str]:  # psycopg2 cursor
    """Those of ``names`` that exist in the current schema as relations of ``kinds`` (pg_class relkinds)."""
    cur.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind = ANY(%s)"
        " AND relname = ANY(%s) ORDER BY relname",
        (list(kinds), names),
    )
    return [r[0] for r in cur.fetchall()]


def granted_relations(settings: Settings, component: str, access: str) -> list[str]:
    """The relation names of ``ROLE_GRANTS[component][access]`` for these settings."""
    return [name.format(**table_names(settings)) for name in cast("tuple[str, ...]", ROLE_GRANTS[component][access])]


def grant_role(conn, settings: Settings, component: str, role: str) -> dict[str, list[str]]:
    """Grant ``role`` exactly what ``component`` needs (``ROLE_GRANTS``) on the tables present now; run again
    after migrations that add tables. Returns ``{"write": [...], "read": [...], "sequences": [...]}``.

    Raises:
        ValueError: for an unknown component.
    """
    from psycopg2 import sql

    if component not in ROLE_GRANTS:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(sorted(ROLE_GRANTS))}")
    spec = ROLE_GRANTS[component]
    ident = sql.Identifier(role)
    with conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_schema()")
        database, schema = cur.fetchone()
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), ident))
        verb = "GRANT" if spec["create"] else "REVOKE"
        cur.execute(sql.SQL(verb + " CREATE ON SCHEMA {} " + ("TO" if spec["create"] else "FROM") + " {}").format(
            sql.Identifier(schema), ident))
        write = _existing(cur, granted_relations(settings, component, "write"), "rp")
        read = [t for t in _existing(cur, granted_relations(settings, component, "read"), "rp") if t not in write]
        for table in write:
            cur.execute(sql.SQL("GRANT " + WRITE_PRIVILEGES + " ON {} TO {}").format(sql.Identifier(table), ident))
        for table in read:
            cur.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), ident))
        # sequences of the tables it writes (identity/serial columns) and those it names
        cur.execute(
            "SELECT DISTINCT s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
            " JOIN pg_class t ON t.oid = d.refobjid WHERE t.relname = ANY(%s)",
            (write,),
        )
        owned = {r[0] for r in cur.fetchall()}
        sequences = sorted(owned | set(_existing(cur, granted_relations(settings, component, "write"), "S")))
        for seq in sequences:
            cur.execute(sql.SQL("GRANT USAGE, SELECT ON SEQUENCE {} TO {}").format(sql.Identifier(seq), ident))
    return {"write": write, "read": read, "sequences": sequences}


def bootstrap_roles(settings: Settings, roles: dict[str, dict[str, str]], rotate: bool = False) -> dict[str, str]:
    """Create or update the per-component database roles of the AWS deployment and fill their secrets.

    Run as the RDS master user (``settings`` resolve its secret, ``SFMLOPS_PG_SECRET_ARN``) after the
    migrations. For each component a role without a password in its secret gets a generated one (as does
    every role with ``rotate``); the secret's value becomes JSON ``username``/``password`` (plus host, port
    and database, as RDS writes them), then the grants of :data:`ROLE_GRANTS` are applied. The apps re-read
    their secret when the database refuses the old password (:func:`connect`).

    Args:
        settings: Settings of the master user.
        roles: ``{component: {"username": ..., "secret_arn": ...}}`` (Terraform output ``database_roles``);
            components are those of :data:`ROLE_GRANTS` plus ``mlflow`` (owner of ``settings.mlflow_database``).
        rotate: Generate new passwords for every role.

    Returns:
        ``{component: "created" | "rotated" | "kept"}``.

    Raises:
        ValueError: for an unknown component or a secret that is not the JSON this writes.
    """
    import json
    import secrets as pysecrets

    from psycopg2 import sql

    unknown = sorted(set(roles) - set(ROLE_GRANTS) - {"mlflow"})
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {', '.join(sorted([*ROLE_GRANTS, 'mlflow']))}")
    client = settings.boto3_client("secretsmanager")
    outcome: dict[str, str] = {}
    conn = connect(settings)
    conn.autocommit = True
    try:
        for component, spec in sorted(roles.items()):
            username, arn = spec["username"], spec["secret_arn"]
            try:
                current = json.loads(client.get_secret_value(SecretId=arn).get("SecretString") or "{}")
            except client.exceptions.ResourceNotFoundException:
                current = {}  # created by Terraform without a value yet
            if not isinstance(current, dict) or current.get("username", username) != username:
                raise ValueError(f"secret {arn} of {component} names user {current.get('username')!r}, not {username!r}")
            password = current.get("password")
            state = "kept"
            if rotate or not password:
                state = "rotated" if password else "created"
                password = pysecrets.token_urlsafe(32)
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (username,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(username)), (password,))
                if component == "mlflow":
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.mlflow_database,))
                    exists = cur.fetchone() is not None
                    db, role = sql.Identifier(settings.mlflow_database), sql.Identifier(username)
                    cur.execute("SELECT pg_has_role(%s, 'USAGE')", (username,))
                    if not cur.fetchone()[0]:  # RDS' master is no superuser: it must be a member to hand over a database
                        cur.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
                    template = "ALTER DATABASE {} OWNER TO {}" if exists else "CREATE DATABASE {} OWNER {}"
                    cur.execute(sql.SQL(template).format(db, role))
            if component != "mlflow":
                with conn.cursor() as cur:
                    cur.execute("BEGIN")
                    grant_role(conn, settings, component, username)
                    cur.execute("COMMIT")
            if state != "kept":
                value = {"username": username, "password": password, "engine": "postgres", "host": settings.pg_host,
                         "port": settings.pg_port, "dbname": settings.mlflow_database if component == "mlflow" else settings.pg_database}
                client.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
            outcome[component] = state
    finally:
        conn.close()
    return outcome
