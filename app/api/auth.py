"""API keys: issued once in plain text, stored only as HMAC-SHA256(pepper, key).

A key looks like ``sfm_<8 hex prefix>_<43 url-safe chars>``; the prefix is stored in clear so an operator
can tell keys apart. Callers present the key in the ``X-API-Key`` header.

Revocation: each process caches the keys it has validated, tagged with the key-set version (a one-row table
``<table_api_keys>_version`` that a trigger bumps whenever a key is revoked, deleted or moved). With
``R = SFMLOPS_API_AUTH_RECHECK_S`` (default 1 s), a version read is trusted for ``R`` from the moment the read
*started*, and a request that finds it older than ``R / 2`` starts a re-read in the background
(:func:`key_set_version`; one at a time per process, on the request's event loop): under load the version is
re-read every ``R / 2`` and no request waits for it. Only a request that finds the last read older than
``R`` (an idle process, a database slower than ``R / 2``) waits for the re-read. So a revoked key is refused
everywhere at most ``R`` after the revoking commit, at the cost of two tiny queries a second per busy
process (none per request).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from app.api import db
from app.api.errors import ApiError
from app.config import Settings

KEY_HEADER = "X-API-Key"
#: Seconds a successful key lookup is reused by this process, as long as the key-set version is unchanged.
AUTH_CACHE_TTL_S = 300.0
_AUTH_CACHE_MAX = 10_000
#: digest-with-database -> (expires at, key-set version it was validated under, client)
_auth_cache: dict[str, tuple[float, int, Client]] = {}
_auth_lock = threading.Lock()
#: database -> (monotonic time the read started, key-set version read); trusted for ``api_auth_recheck_s``.
_versions: dict[str, tuple[float, int]] = {}
_version_lock = threading.Lock()  # serialises the sync readers (held during their query)
_store_lock = threading.Lock()  # held for a dict update only (taken on the event loop too)
#: database -> the background re-read of the version in flight (at most one per process and database).
_version_reads: dict[str, asyncio.Task] = {}
log = logging.getLogger(__name__)
CLIENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Client:
    """An authenticated API client."""

    id: int
    name: str


def hash_key(settings: Settings, key: str) -> str:
    """The stored form of ``key``: hex HMAC-SHA256 keyed with ``settings.api_key_pepper``."""
    pepper = settings.require_api_key_pepper().get_secret_value().encode()
    return hmac.digest(pepper, key.encode(), hashlib.sha256).hex()  # one-shot: OpenSSL's HMAC, no hmac object


def _key_prefix(key: str) -> str:
    return key[:12] if key.startswith("sfm_") else key[:4]


def register_key(settings: Settings, client_name: str, key: str) -> Client:
    """Store ``key`` (hashed) for ``client_name``, creating the client if needed; idempotent.

    Used by :func:`issue_key`, and by the local stack to accept ``settings.api_key`` for the UI and DAGs.

    Raises:
        ValueError: if the client name or key is malformed.
    """
    if not CLIENT_NAME_RE.match(client_name):
        raise ValueError(f"client name {client_name!r} must match {CLIENT_NAME_RE.pattern}")
    if len(key) < 12:
        raise ValueError("API key must be at least 12 characters (SFMLOPS_API_KEY)")
    t_clients, t_keys = settings.table_api_clients, settings.table_api_keys
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {t_clients} (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
            " RETURNING id",
            (client_name,),
        )
        created = cur.fetchone()
        assert created is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING always returns the row
        client_id = created[0]
        cur.execute(
            f"INSERT INTO {t_keys} (client_id, key_prefix, key_hash) VALUES (%s, %s, %s)"
            " ON CONFLICT (key_hash) DO NOTHING RETURNING client_id",
            (client_id, _key_prefix(key), hash_key(settings, key)),
        )
        if cur.fetchone() is None:
            cur.execute(f"SELECT client_id FROM {t_keys} WHERE key_hash = %s", (hash_key(settings, key),))
            existing = cur.fetchone()
            assert existing is not None  # the INSERT above conflicted on this key_hash: the row exists
            owner = existing[0]
            if owner != client_id:
                raise ValueError(f"this key is already registered to another client (id {owner})")
    return Client(id=client_id, name=client_name)


def issue_key(settings: Settings, client_name: str) -> str:
    """Create a new API key for ``client_name`` (creating the client if needed) and return it in plain text.

    The key is not stored, only its hash: show it to the operator once.
    """
    key = f"sfm_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    register_key(settings, client_name, key)
    return key


def revoke_keys(settings: Settings, client_name: str) -> int:
    """Revoke every active key of ``client_name``; returns how many were revoked.

    The key-set version moves in the same transaction (trigger), so every API process refuses the keys
    within ``settings.api_auth_recheck_s``.
    """
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            f"UPDATE {settings.table_api_keys} k SET revoked_at = now() FROM {settings.table_api_clients} c"
            " WHERE k.client_id = c.id AND c.name = %s AND k.revoked_at IS NULL",
            (client_name,),
        )
        count = cur.rowcount
    with _auth_lock:
        _auth_cache.clear()
    with _store_lock:
        _versions.clear()
    return count


def _db_ident(settings: Settings) -> str:
    return f"{settings.pg_host}:{settings.pg_port}/{settings.pg_database}/{settings.table_api_keys}"


def _cache_key(settings: Settings, digest: str, ident: str | None = None) -> str:
    return f"{ident or _db_ident(settings)}|{digest}"


def version_table(settings: Settings) -> str:
    """The one-row table holding the key-set version (created by ``app/sql/030_api.sql``)."""
    return f"{settings.table_api_keys}_version"


def _known_version(settings: Settings) -> int | None:
    """The key-set version this process read less than ``api_auth_recheck_s`` ago, or None when due."""
    hit = _versions.get(_db_ident(settings))
    return hit[1] if hit is not None and time.monotonic() - hit[0] < settings.api_auth_recheck_s else None


def _store_version(ident: str, started: float, version: int) -> None:
    with _store_lock:
        hit = _versions.get(ident)
        if hit is None or hit[0] < started:  # a slower, older read never replaces a newer one
            _versions[ident] = (started, version)


def _not_migrated(settings: Settings, exc: BaseException) -> ApiError:
    return ApiError(503, "The API's key tables are not migrated", internal=f"{exc}".strip() + " (run `sfmlops up`)")


def _current_version(settings: Settings) -> int:
    """The key-set version (sync callers: health, CLI, tests), read from Postgres when the last read is due."""
    ident = _db_ident(settings)
    with _version_lock:  # one reader per process; the others wait for its answer
        hit = _versions.get(ident)
        if hit is not None and time.monotonic() - hit[0] < settings.api_auth_recheck_s:
            return hit[1]
        started = time.monotonic()
        try:
            with db.connection(settings) as conn, conn.cursor() as cur:
                cur.execute(f"SELECT version FROM {version_table(settings)}")
                row = cur.fetchone()
        except psycopg.errors.UndefinedTable as exc:
            raise _not_migrated(settings, exc) from exc
        version = int(row[0]) if row else 0
        _store_version(ident, started, version)
        return version


async def _read_version(settings: Settings, ident: str) -> int:
    """Read the key-set version on the async pool and store it, stamped with the time the read started."""
    started = time.monotonic()
    try:
        row = await db.read_one(settings, f"SELECT version FROM {version_table(settings)}", {})
    except psycopg.errors.UndefinedTable as exc:
        raise _not_migrated(settings, exc) from exc
    version = int(row[0]) if row else 0
    _store_version(ident, started, version)
    return version


def _read_done(ident: str, task: asyncio.Task) -> None:
    if _version_reads.get(ident) is task:
        del _version_reads[ident]
    if not task.cancelled() and task.exception() is not None:  # retrieved here: a request awaiting it reports it
        log.warning("key-set version re-read failed: %s", task.exception())


async def key_set_version(settings: Settings, ident: str | None = None) -> int:
    """The key-set version to check cached keys against; never waits for the database while it is fresh.

    The last read is trusted for ``api_auth_recheck_s`` (counted from when it started); from half that age
    on, a re-read runs in the background (one per process and database) while requests keep the known
    version. Only when the last read is older than ``api_auth_recheck_s`` (or there is none) does the
    request wait for the re-read.

    Raises:
        ApiError: 503 when the version must be read and the database cannot answer.
    """
    ident = ident or _db_ident(settings)
    hit = _versions.get(ident)
    age = time.monotonic() - hit[0] if hit is not None else float("inf")
    if hit is not None and age < settings.api_auth_recheck_s / 2:  # (no hit: age is inf)
        return hit[1]
    loop = asyncio.get_running_loop()
    task = _version_reads.get(ident)
    if task is None or task.done() or task.get_loop() is not loop:
        task = loop.create_task(_read_version(settings, ident))
        _version_reads[ident] = task
        task.add_done_callback(lambda t: _read_done(ident, t))
    if hit is not None and age < settings.api_auth_recheck_s:
        return hit[1]  # the re-read answers the next requests
    return await asyncio.shield(task)


def cached_client(settings: Settings, key: str | None, version: int | None = None) -> Client | None:
    """The client of ``key`` if this process validated it under key-set ``version``.

    ``version`` defaults to the version read less than ``api_auth_recheck_s`` ago (None when due). Never
    touches the database (safe on the event loop): None when the key is unknown here or no version is
    known, and then :func:`authenticate` answers.
    """
    if not key or len(key) > 256:
        return None
    if version is None:
        version = _known_version(settings)
        if version is None:
            return None
    return _cached(_cache_key(settings, hash_key(settings, key)), version)


def _cached(cache_key: str, version: int) -> Client | None:
    """The cached client under ``cache_key`` if it was validated under ``version`` and has not expired."""
    hit = _auth_cache.get(cache_key)
    if hit is None or hit[1] != version or hit[0] <= time.monotonic():
        return None
    return hit[2]


async def request_client(settings: Settings, key: str | None, on_lookup: Callable[[], None] | None = None) -> Client:
    """The client of a request's ``key``: from memory when this process validated it under the current
    key-set version (one HMAC and two dict lookups: no query, no thread), else :func:`authenticate` in a
    worker thread. ``on_lookup`` is called first when the key is not cached at all (the rate limiter's
    shared bucket of lookups: it may raise 429 before the database is asked).

    Raises:
        ApiError: 401 when the key is missing, unknown or revoked; 503 when the database cannot say.
    """
    if not key or len(key) > 256:
        return authenticate(settings, key)  # refuses before any query
    ident = _db_ident(settings)
    cache_key = _cache_key(settings, hash_key(settings, key), ident)
    if on_lookup is not None and cache_key not in _auth_cache:
        on_lookup()
    version = await key_set_version(settings, ident)
    client = _cached(cache_key, version)
    if client is not None:
        return client
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(authenticate, settings, key, version)


def authenticate(settings: Settings, key: str | None, version: int | None = None) -> Client:
    """The client owning ``key``, checked against key-set ``version`` (default: read it when due).

    Raises:
        ApiError: 401 when the key is missing, unknown or revoked; 503 when the database cannot say.
    """
    challenge = {"WWW-Authenticate": f'ApiKey header="{KEY_HEADER}"'}
    if not key:
        raise ApiError(401, f"Missing API key: send it in the {KEY_HEADER} header", headers=challenge)
    if len(key) > 256:
        raise ApiError(401, "Invalid API key", headers=challenge)
    digest = hash_key(settings, key)
    cache_key = _cache_key(settings, digest)
    if version is None:
        version = _current_version(settings)
    hit = _auth_cache.get(cache_key)
    if hit is not None and hit[1] == version and hit[0] > time.monotonic():
        return hit[2]
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT c.id, c.name FROM {settings.table_api_keys} k JOIN {settings.table_api_clients} c"
            " ON c.id = k.client_id WHERE k.key_hash = %s AND k.revoked_at IS NULL",
            (digest,),
        )
        row = cur.fetchone()
    if row is None:
        raise ApiError(401, "Invalid or revoked API key", headers=challenge)
    client = Client(id=row[0], name=row[1])
    with _auth_lock:
        if len(_auth_cache) >= _AUTH_CACHE_MAX:
            _auth_cache.clear()
        # Tagged with the version read *before* the lookup: a revocation committed in between moves the
        # version, so this entry is dropped at the next check rather than trusted.
        _auth_cache[cache_key] = (time.monotonic() + AUTH_CACHE_TTL_S, version, client)
    return client
