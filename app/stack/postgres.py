"""PostgreSQL: a cluster created with initdb under ``<state>/pg``, bound to 127.0.0.1."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from app.stack.base import Service, StackError

SUPERUSER = "postgres"
#: pg_ident.conf map from the OS user running the stack to the database superuser.
IDENT_MAP = "sfmlops"


def find_pg_bin(configured: Path | None) -> Path:
    """The folder holding initdb/postgres: the setting, else the newest Debian version, else PATH."""
    if configured:
        if not (Path(configured) / "initdb").exists():
            raise StackError(f"SFMLOPS_PG_BIN_DIR={configured} has no initdb")
        return Path(configured)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise StackError("PostgreSQL binaries (initdb, postgres) not found: run `make setup` (installs Debian's postgresql)")


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients

    @property
    def bin_dir(self) -> Path:
        return find_pg_bin(self.settings.pg_bin_dir)

    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "pg" / "data"

    @property
    def socket_dir(self) -> Path:
        return self.settings.state_dir / "pg" / "run"

    def ports(self) -> list[int]:
        return [self.settings.pg_port]

    def preexec_user(self) -> tuple[int, int] | None:
        # PostgreSQL refuses to run as root; CI and these machines run as root.
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError("running as root needs the 'postgres' OS user: run `make setup`") from exc
        return entry.pw_uid, entry.pw_gid

    def _chown(self, path: Path) -> None:
        user = self.preexec_user()
        if user:
            for p in [path, *path.rglob("*")]:
                os.chown(p, *user)

    def _make_traversable(self, path: Path) -> None:
        """Let the postgres OS user reach ``path``: add search (x, not read) permission on ancestors."""
        for folder in [path, *path.parents]:
            try:
                mode = folder.stat().st_mode
                if not mode & 0o001:
                    os.chmod(folder, mode | 0o001)
            except OSError:
                continue

    def _os_user(self) -> str:
        """The OS user that runs the stack (and may be the database superuser through the socket)."""
        return pwd.getpwuid(os.geteuid()).pw_name

    def hba_conf(self) -> str:
        """``pg_hba.conf``: the superuser only by peer authentication on the private socket, mapped from the
        OS user running the stack; every other connection with a SCRAM password; nothing trusted."""
        return (
            "# Written by app/stack/postgres.py on every start; edits are overwritten.\n"
            "# TYPE  DATABASE  USER       ADDRESS       METHOD\n"
            f"local   all       {SUPERUSER}              peer map={IDENT_MAP}\n"
            "local   all       all                     scram-sha-256\n"
            "host    all       all        127.0.0.1/32  scram-sha-256\n"
            "host    all       all        ::1/128       scram-sha-256\n"
        )

    def ident_conf(self) -> str:
        return f"# Written by app/stack/postgres.py.\n{IDENT_MAP}  {self._os_user()}  {SUPERUSER}\n"

    def _write_auth_config(self) -> None:
        """(Re)write the authentication files, so a cluster created by an older version (``trust`` for local
        connections) is migrated on its next start."""
        user = self.preexec_user()
        for name, text in (("pg_hba.conf", self.hba_conf()), ("pg_ident.conf", self.ident_conf())):
            path = self.data_dir / name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o600)
            if user:
                os.chown(tmp, *user)
            os.replace(tmp, path)

    def prepare(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        # Private socket folder: only the server's OS user (and root) may even reach the socket.
        os.chmod(self.socket_dir, 0o700)
        if self.preexec_user():
            # The postgres OS user must reach its data folder: search (x, not read) permission on the
            # ancestors. The socket folder stays 0700 and no connection is trusted (see hba_conf).
            self._make_traversable(self.socket_dir.parent)
        self._chown(self.socket_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_auth_config()

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        self._chown(self.data_dir)
        user = self.preexec_user()
        cmd = [
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        ]
        result = subprocess.run(  # fixed argv
            cmd, capture_output=True, text=True, user=user[0] if user else None, group=user[1] if user else None,
            extra_groups=[] if user else None, check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise StackError(f"initdb failed ({result.returncode}): {result.stderr.strip()[-800:]}")

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
            "-p", str(self.settings.pg_port), "-k", str(self.socket_dir),
            "-c", f"listen_addresses={self.settings.bind_host}",
            "-c", "shared_buffers=256MB", "-c", "max_connections=200",
            "-c", "max_wal_size=2GB", "-c", "synchronous_commit=on",
            "-c", "logging_collector=off",
        ]

    def expected_cmd_fragment(self) -> str:
        return str(self.data_dir)

    def superuser_conn(self, dbname: str = "postgres"):
        import psycopg2

        # Peer authentication on the private socket (see hba_conf): no password exists for the superuser.
        return psycopg2.connect(host=str(self.socket_dir), port=self.settings.pg_port, user=SUPERUSER, dbname=dbname)

    def healthy(self) -> bool:
        with self.superuser_conn() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            return cur.fetchone() == (1,)

    def after_start(self) -> None:
        """Create the application role and databases (idempotent), then apply migrations."""
        from psycopg2 import sql

        s = self.settings
        conn = self.superuser_conn()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (s.pg_user,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(
                    sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(s.pg_user)),
                    (s.pg_password.get_secret_value(),),
                )
                for db in (s.pg_database, s.mlflow_database):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                    if not cur.fetchone():
                        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(s.pg_user)))
        finally:
            conn.close()
        from app.db import apply_migrations

        apply_migrations(s)
