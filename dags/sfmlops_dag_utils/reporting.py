"""The weekly run's report: what the champion gate decided for the newly trained model."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"


def champion_decision(result: dict[str, Any], models: dict[str, Any]) -> dict[str, Any]:
    """Combine the training job's summary (its ``gate``) with the registry's aliases.

    Args:
        result: The ``result`` of the finished training job (the JSON line the Ray job printed last).
        models: The body of ``GET /v1/models``.

    Returns:
        ``decision`` (champion | challenger | scope_champion | scope_challenger | unknown), ``alias`` and
        ``scope`` the gate set (a training on a store subset is gated against that subset's champion), ``version``, ``new_rmspe``, ``champion_rmspe``,
        ``previous_champion``, ``aliases`` and a one-line ``summary``.
    """
    raw_gate = result.get("gate")
    gate: dict[str, Any] = raw_gate if isinstance(raw_gate, dict) else {}
    aliases = models.get("aliases") or {}
    version = gate.get("version") or result.get("model_version") or result.get("version")
    decision = gate.get("decision") or "unknown"
    scoped = decision.startswith("scope_")  # trained on a store subset: the champion of that scope only
    out = {
        "decision": decision,
        "alias": gate.get("alias"),
        "scope": gate.get("scope"),
        "version": None if version is None else str(version),
        "new_rmspe": gate.get("new_rmspe", result.get("rmspe")),
        "champion_rmspe": gate.get("champion_rmspe"),
        "previous_champion": gate.get("previous_champion"),
        "aliases": aliases,
        "model": models.get("name"),
    }
    of_scope = f" of scope {out['scope']} (alias {out['alias']})" if scoped else ""
    if decision in ("champion", "scope_champion"):
        verdict = f"new model v{out['version']} is the champion{of_scope} (RMSPE {_fmt(out['new_rmspe'])}"
        verdict += (
            f" beats v{out['previous_champion']} at {_fmt(out['champion_rmspe'])})" if out["previous_champion"] else ", first champion)"
        )
    elif decision in ("challenger", "scope_challenger"):
        verdict = (
            f"new model v{out['version']} stays challenger{of_scope} (RMSPE {_fmt(out['new_rmspe'])} does not beat champion "
            f"v{out['previous_champion']} at {_fmt(out['champion_rmspe'])})"
        )
    else:
        verdict = "the training job reported no champion gate decision (model not registered?)"
    out["summary"] = f"{verdict}; registry aliases of {out['model']}: {aliases}"
    return out
