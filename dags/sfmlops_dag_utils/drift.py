"""Live accuracy after each ingest, and an early retraining when the served model drifts (issue 18.4).

``score_accuracy``: ``POST /v1/accuracy/score`` - the API scores the stored forecasts of its model against
the sales that have landed, per version, day and horizon bucket, stores the scores and answers the drift
status (``drift`` is the flag of the current version, the one whose forecasts are served; the margin and the
number of days are the API's settings ``SFMLOPS_ACCURACY_DRIFT_MARGIN`` / ``SFMLOPS_ACCURACY_DRIFT_DAYS``).

``retrain_on_drift``: when the flag is up (and the run configuration's ``retrain_on_drift`` is true), submit
the weekly training's request (``training_request``) through ``POST /v1/training-jobs`` with an
Idempotency-Key of the DAG run, so a retried task never starts a second job.

Only the standard library here: the functions take the ``SfmlopsApi`` client (any object with its
``request``/``submit_training`` methods).
"""

from __future__ import annotations

from typing import Any


def score_accuracy(api: Any) -> dict[str, Any]:  # noqa: ANN401 - SfmlopsApi
    """Score the stored forecasts against the new actuals; returns the API's answer (``status`` inside)."""
    return api.request("POST", "/v1/accuracy/score", json={})


def retraining_decision(status: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    """Whether to retrain now, from the drift status of ``POST /v1/accuracy/score`` (or ``GET /v1/accuracy``).

    Returns:
        ``{"retrain": bool, "version", "reason"}``.
    """
    version = status.get("current_version")
    reason = str(status.get("reason") or "")
    if not status.get("drift"):
        return {"retrain": False, "version": version, "reason": f"no drift: {reason}"}
    if not enabled:
        return {"retrain": False, "version": version, "reason": f"drift, but retrain_on_drift is off: {reason}"}
    return {"retrain": True, "version": version, "reason": f"drift: {reason}"}


def retrain_on_drift(api: Any, status: dict[str, Any], body: dict[str, Any], idempotency_key: str, enabled: bool = True) -> dict[str, Any]:  # noqa: ANN401
    """Submit ``body`` as a training job when :func:`retraining_decision` says so.

    Returns:
        The decision, with ``job`` (the API's answer) when a training was submitted.
    """
    decision = retraining_decision(status, enabled)
    if decision["retrain"]:
        decision["job"] = api.submit_training(body, idempotency_key)
        decision["request"] = body
    return decision
