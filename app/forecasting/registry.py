"""Model registry: the scope of a model and the champion gate.

**Scope.** A model trained on every store of the data has scope ``all``; one trained on a named subset of
stores has scope ``stores-<hash>`` (the first 12 hex digits of the SHA-256 of the sorted, distinct store ids,
see :func:`scope_of`). The scope is tagged on the version (``scope``, ``scope_stores``) and decides the
aliases the gate may move: only scope ``all`` competes for ``champion`` / ``challenger`` (what the batch
forecast, the API and ``evaluate`` use); a subset model competes only with models of the same subset, for
``champion-<scope>`` / ``challenger-<scope>``. A subset model is never compared with, nor made, the chain's
champion, and a champion whose scope is not ``all`` (registered before scopes existed) is no yardstick for
an all-store model.

**Gate.** A newly registered version takes its scope's champion alias only when its backtest RMSPE is lower
than the current holder's (read from that version's ``backtest_rmspe`` tag); otherwise it takes the
challenger alias. A holder whose model artifacts are gone (its ``MLmodel`` is not in the artifact folder
MLflow lists for the version: an emptied bucket, an emulator restarted without S3 persistence) is no
champion: nobody can load it, so the new version takes the alias and its reason says why
(:func:`missing_model`). The read-compare-set runs under a PostgreSQL advisory lock keyed by the model name
(:func:`gate_lock`), so two trainings that finish together are gated one after the other and the better
model holds the alias whatever the finish order.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
RMSPE_TAG = "backtest_rmspe"
SCOPE_TAG = "scope"
SCOPE_STORES_TAG = "scope_stores"
SCOPE_ALL = "all"
#: First key of the gate's advisory lock (the second is ``hashtext(model name)``).
GATE_LOCK_NAMESPACE = 0x5F6A7E
#: The file every MLflow model folder holds (its flavors): a version without it cannot be loaded.
MODEL_FILE = "MLmodel"
#: Longest ``scope_stores`` tag value (MLflow limits tag values; the hash in ``scope`` is the identity).
_SCOPE_STORES_MAX = 4000


def scope_of(stores: list[int] | None) -> str:
    """Canonical scope of a training: ``all`` for every store (``None`` or empty), else ``stores-<hash>``.

    The hash does not depend on the order or repetition of ``stores``.
    """
    if not stores:
        return SCOPE_ALL
    ids = sorted({int(s) for s in stores})
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:12]
    return f"stores-{digest}"


def scope_aliases(scope: str) -> tuple[str, str]:
    """``(champion alias, challenger alias)`` of a scope."""
    if scope == SCOPE_ALL:
        return CHAMPION, CHALLENGER
    return f"{CHAMPION}-{scope}", f"{CHALLENGER}-{scope}"


def version_scope(client: Any, mv: Any) -> str | None:
    """Scope of a model version: its ``scope`` tag, else its run's ``scope`` tag mapped onto the canonical form
    (runs before scopes were tagged on versions wrote ``all`` or ``stores:1,2,...``); ``None`` if unknown."""
    scope = (mv.tags or {}).get(SCOPE_TAG)
    if scope:
        return scope
    try:
        run_scope = client.get_run(mv.run_id).data.tags.get(SCOPE_TAG)
    except Exception:  # noqa: BLE001 - a version without a readable run has no known scope
        return None
    if run_scope == SCOPE_ALL:
        return SCOPE_ALL
    if run_scope and run_scope.startswith("stores:"):
        return f"stores-legacy:{run_scope[len('stores:'):]}"
    return None


def _holder(client: Any, name: str, alias: str) -> tuple[str | None, float | None, str | None]:
    """``(version, backtest_rmspe, scope)`` of the version holding ``alias``, or ``(None, None, None)``."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None, None
    raw = (mv.tags or {}).get(RMSPE_TAG)
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        value = None
    if value is None or math.isnan(value):
        # Fall back to the run metric of the version.
        try:
            value = float(client.get_run(mv.run_id).data.metrics[f"{RMSPE_TAG}"])
        except Exception:  # noqa: BLE001 - a champion without a number loses to any measured model
            value = None
    return str(mv.version), value, version_scope(client, mv)


def missing_model(client: Any, name: str, version: str) -> str | None:
    """Why version ``version`` of ``name`` cannot be loaded: the artifact folder MLflow gives for it (one
    listing, no download) has no ``MLmodel``. None when it has one, and when the listing itself fails (a
    store that does not answer says nothing about the artifacts: the holder is kept, with a warning)."""
    from mlflow.artifacts import list_artifacts

    uri = None
    try:
        uri = client.get_model_version_download_uri(name, version)
        files = list_artifacts(artifact_uri=uri) or []
    except Exception as exc:  # noqa: BLE001 - MLflow and the artifact stores raise many kinds; none proves absence
        log.warning("could not list the artifacts of %s v%s (%s): %s; kept as a champion", name, version, uri, exc)
        return None
    if any(f.path.rsplit("/", 1)[-1] == MODEL_FILE for f in files):
        return None
    return f"no {MODEL_FILE} under {uri}"


def champion_gate(client: Any, name: str, version: str, new_rmspe: float, scope: str = SCOPE_ALL) -> dict[str, Any]:
    """Alias ``version`` of ``name`` as its scope's champion if it beats the current one, else as challenger.

    Not serialized: call :func:`gate` (which holds :func:`gate_lock`) unless the caller holds the lock.

    Args:
        client: ``mlflow.MlflowClient``.
        name: Registered model name.
        version: The new version.
        new_rmspe: Its backtest RMSPE.
        scope: Its scope (:func:`scope_of`).

    Returns:
        ``{"decision", "alias", "scope", "version", "new_rmspe", "champion_rmspe", "previous_champion",
        "reason"}``; ``decision`` is ``champion``/``challenger`` for scope ``all`` and
        ``scope_champion``/``scope_challenger`` for a subset.
    """
    champion_alias, challenger_alias = scope_aliases(scope)
    client.set_model_version_tag(name, version, RMSPE_TAG, f"{new_rmspe:.6f}")
    client.set_model_version_tag(name, version, SCOPE_TAG, scope)
    prev_version, prev_rmspe, prev_scope = _holder(client, name, champion_alias)
    foreign = prev_version is not None and prev_scope != scope
    lost = missing_model(client, name, prev_version) if prev_version is not None and not foreign else None
    # Compared at the tag's precision: the champion's RMSPE is read back from its 6-decimal tag, so an
    # identical retrain (0.0998818 vs the tag's 0.099882) must be a tie, not a win.
    wins = prev_version is None or foreign or lost is not None or prev_rmspe is None or round(new_rmspe, 6) < round(prev_rmspe, 6)
    alias = champion_alias if wins else challenger_alias
    client.set_registered_model_alias(name, alias, version)
    prev_text = f"{prev_rmspe:.4f}" if prev_rmspe is not None else "nan"
    if prev_version is None:
        reason = f"no current {champion_alias}"
    elif foreign:
        reason = f"{champion_alias} v{prev_version} has scope {prev_scope or 'unknown'}, not {scope}: replaced"
    elif lost is not None:
        reason = f"{champion_alias} v{prev_version} cannot be loaded ({lost}): replaced as if there were no {champion_alias}"
    else:
        reason = f"new {new_rmspe:.4f} {'<' if wins else '>='} {champion_alias} v{prev_version} {prev_text}"
    if scope == SCOPE_ALL:
        decision = CHAMPION if wins else CHALLENGER
    else:
        decision = f"scope_{CHAMPION}" if wins else f"scope_{CHALLENGER}"
    client.set_model_version_tag(name, version, "gate_decision", decision)
    client.set_model_version_tag(name, version, "gate_reason", reason)
    log.info("champion gate for %s v%s (scope %s): %s -> alias %s (%s)", name, version, scope, decision, alias, reason)
    return {
        "decision": decision,
        "alias": alias,
        "scope": scope,
        "version": str(version),
        "new_rmspe": float(new_rmspe),
        "champion_rmspe": None if foreign or lost is not None else prev_rmspe,
        "previous_champion": prev_version,
        "reason": reason,
    }


@contextmanager
def gate_lock(settings: Settings, name: str) -> Iterator[None]:
    """Hold the PostgreSQL advisory lock of model ``name``'s gate (transaction-scoped; released on exit or
    when the connection dies). Waits at most ``lock_timeout`` (10 minutes) for another gate."""
    from app import db

    conn = db.connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '10min'")
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (GATE_LOCK_NAMESPACE, name))
            yield
    finally:
        conn.close()


def gate(settings: Settings, client: Any, name: str, version: str, new_rmspe: float, scope: str = SCOPE_ALL) -> dict[str, Any]:
    """:func:`champion_gate` under :func:`gate_lock`: the read-compare-set of one model name is serialized."""
    with gate_lock(settings, name):
        return champion_gate(client, name, version, new_rmspe, scope)


def register_and_gate(settings: Settings, run_id: str, rmspe: float, stores: list[int] | None) -> dict[str, Any]:
    """Register ``runs:/<run_id>/model`` as a new version of ``settings.model_name`` with its scope, gate it,
    and record the outcome on the run (tags ``gate_decision``, ``model_version``, metric
    ``champion_rmspe_before``, artifact ``gate.json``).

    Returns:
        ``{"model_version", "gate"}`` (see :func:`champion_gate`).
    """
    import mlflow
    from mlflow import MlflowClient

    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    scope = scope_of(stores)
    tags = {SCOPE_TAG: scope}
    if stores:
        ids = ",".join(map(str, sorted({int(s) for s in stores})))
        tags[SCOPE_STORES_TAG] = ids if len(ids) <= _SCOPE_STORES_MAX else ids[: _SCOPE_STORES_MAX - 3] + "..."
    mv = mlflow.register_model(f"runs:/{run_id}/model", settings.model_name, tags=tags)
    result = gate(settings, client, settings.model_name, str(mv.version), rmspe, scope)
    client.set_tag(run_id, "gate_decision", result["decision"])
    client.set_tag(run_id, "model_version", str(mv.version))
    before = result["champion_rmspe"]
    client.log_metric(run_id, "champion_rmspe_before", before if before is not None else float("nan"))
    client.log_dict(run_id, result, "gate.json")
    return {"model_version": str(mv.version), "gate": result}
