"""Model registry helpers: the champion gate.

A newly registered version becomes ``champion`` only when its backtest RMSPE is lower than the current
champion's (read from the champion version's ``backtest_rmspe`` tag); otherwise it is aliased
``challenger``. The decision and both numbers are returned and tagged on the version.
"""

from __future__ import annotations

import logging
import math
from typing import Any

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
RMSPE_TAG = "backtest_rmspe"


def current_champion(client: Any, name: str) -> tuple[str | None, float | None]:
    """``(version, backtest_rmspe)`` of the version aliased ``champion``, or ``(None, None)``."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
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
    return str(mv.version), value


def champion_gate(client: Any, name: str, version: str, new_rmspe: float) -> dict[str, Any]:
    """Alias ``version`` of ``name`` as champion if it beats the current champion, else as challenger.

    Args:
        client: ``mlflow.MlflowClient``.
        name: Registered model name.
        version: The new version.
        new_rmspe: Its backtest RMSPE.

    Returns:
        ``{"decision": "champion"|"challenger", "new_rmspe", "champion_rmspe", "previous_champion", "version"}``.
    """
    client.set_model_version_tag(name, version, RMSPE_TAG, f"{new_rmspe:.6f}")
    prev_version, prev_rmspe = current_champion(client, name)
    # Compared at the tag's precision: the champion's RMSPE is read back from its 6-decimal tag, so an
    # identical retrain (0.0998818 vs the tag's 0.099882) must be a tie, not a win.
    if prev_version is None or prev_rmspe is None or round(new_rmspe, 6) < round(prev_rmspe, 6):
        decision = CHAMPION
    else:
        decision = CHALLENGER
    client.set_registered_model_alias(name, decision, version)
    reason = (
        "no current champion"
        if prev_version is None
        else f"new {new_rmspe:.4f} {'<' if decision == CHAMPION else '>='} champion v{prev_version} {prev_rmspe if prev_rmspe is not None else float('nan'):.4f}"
    )
    client.set_model_version_tag(name, version, "gate_decision", decision)
    client.set_model_version_tag(name, version, "gate_reason", reason)
    log.info("champion gate for %s v%s: %s (%s)", name, version, decision, reason)
    return {
        "decision": decision,
        "version": str(version),
        "new_rmspe": float(new_rmspe),
        "champion_rmspe": prev_rmspe,
        "previous_champion": prev_version,
        "reason": reason,
    }
