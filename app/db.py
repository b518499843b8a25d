"""PostgreSQL access for the application role, and the schema migrations in ``app/sql/``.

Migration files are applied in name order on every ``sfmlops up``; each must be idempotent
(``CREATE TABLE IF NOT EXISTS`` ...). Table names are ``str.format`` placeholders filled from the
settings (``{table_sales}``), so literal braces are doubled.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from psycopg2.extensions import connection

    from app.config import Settings

SQL_DIR = Path(__file__).resolve().parent / "sql"


def connect(settings: "Settings", database: str | None = None) -> "connection":
    """A new psycopg2 connection as the application role."""
    import psycopg2

    return psycopg2.connect(settings.pg_dsn(database), connect_timeout=5, application_name="sfmlops")


@contextmanager
def transaction(settings: "Settings") -> Iterator["connection"]:
    """A connection in one transaction: committed on success, rolled back on error, always closed."""
    conn = connect(settings)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def table_names(settings: "Settings") -> dict[str, str]:
    """Every ``table_*`` setting, for formatting SQL templates."""
    return {name: getattr(settings, name) for name in type(settings).model_fields if name.startswith("table_")}


def render(template: str, settings: "Settings") -> str:
    """Fill a SQL template's table placeholders from the settings."""
    return template.format(**table_names(settings))


def migration_files() -> list[Path]:
    return sorted(SQL_DIR.glob("*.sql"))


def apply_migrations(settings: "Settings") -> list[str]:
    """Apply every migration file in order, each in its own transaction. Returns the file names."""
    applied = []
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(81726354)")  # one migrator at a time
        for path in migration_files():
            cur.execute(render(path.read_text(), settings))
            applied.append(path.name)
    return applied
