"""The four pages of the operator UI. Each takes the API client and the settings; all data comes from the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from app.common.jobs import JobState
from app.config import Settings
from app.ui import charts
from app.ui.client import ApiClient, ApiProblem, ui_client

#: Plain marks that every font renders (Chromium without an emoji font shows emoji as empty boxes).
STATE_MARK = {
    JobState.SUBMITTING: "…",
    JobState.PENDING: "…",
    JobState.RUNNING: "▶",
    JobState.SUCCEEDED: "✓",
    JobState.FAILED: "✗",
    JobState.STOPPED: "■",
    JobState.LOST: "?",
}


def state_label(state: str) -> str:
    """``✓ SUCCEEDED``: the state with its mark (unknown states as they are)."""
    try:
        return f"{STATE_MARK[JobState(state)]} {state}"
    except ValueError:
        return state


def show_problem(problem: ApiProblem, what: str) -> None:
    """Render an API failure as a message box (never a stack trace)."""
    st.error(f"**{problem.title}** while loading {what}: {problem.message}")


def guarded(what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; on an API problem show it and return None."""
    try:
        return fn()
    except ApiProblem as problem:
        show_problem(problem, what)
        return None


@st.cache_data(ttl=300, show_spinner=False)
def _stores(base_url: str, key_fingerprint: str, _api: ApiClient) -> list[dict[str, Any]]:
    return _api.stores()


def store_label(store: dict[str, Any]) -> str:
    """``Store 12 · type a · assortment c``."""
    return f"Store {store['store']} · type {store['store_type']} · assortment {store['assortment']}"


def _store_options(api: ApiClient, settings: Settings) -> dict[int, dict[str, Any]] | None:
    fingerprint = str(hash(settings.api_key.get_secret_value()))
    items = guarded("the store list", lambda: _stores(api.base_url, fingerprint, api))
    return None if items is None else {s["store"]: s for s in items}


# --- forecast ----------------------------------------------------------------------------------------------
def forecast_view(api: ApiClient, settings: Settings) -> None:
    """A store's recent actuals and forecast, model facts, and the forecast table with CSV download."""
    st.header("Store forecast")
    stores = _store_options(api, settings)
    if stores is None:
        return
    if not stores:
        st.info("No stores yet: load data (`sfmlops data`) and ingest it.")
        return
    left, right = st.columns([3, 1])
    store = left.selectbox(
        "Store (type to search)",
        options=list(stores),
        format_func=lambda s: store_label(stores[s]),
        key="forecast_store",
    )
    history = right.slider("Days of history", 14, 180, 56, step=7, key="forecast_history")
    sales = guarded(f"sales of store {store}", lambda: api.store_sales(store, history))
    forecast = guarded(f"the forecast of store {store}", lambda: api.store_forecast(store))
    if forecast is None:
        return
    actuals = charts.sales_frame(sales or {})
    plan = _store_plan(api, store, forecast)
    fc = charts.forecast_frame(forecast, actuals, plan)
    chart_col, facts_col = st.columns([4, 1])
    chart_col.altair_chart(
        charts.forecast_chart(actuals, fc, title=store_label(stores[store])), width="stretch"
    )
    chart_col.caption(
        f"{store_label(stores[store])}: {len(actuals)} days of actual sales, {len(fc)} forecast days. "
        "Shaded: promo days. ✚ red: closed days. Band: prediction interval. Green squares: forecast days whose "
        "inputs (open, promo, holidays) came from the store's planning data; the other days' inputs are projected "
        "from the last weeks, as the batch forecast does."
    )
    chart_col.caption(charts.inputs_summary(fc, plan))
    with facts_col:
        _model_facts(api, forecast)
    st.subheader("Forecast table")
    table = fc.assign(date=fc["date"].dt.date).round({"forecast": 0, "lower": 0, "upper": 0})
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button(
        "Download CSV",
        table.to_csv(index=False).encode(),
        file_name=f"forecast_store_{store}_v{forecast.get('model_version')}.csv",
        mime="text/csv",
        key="forecast_csv",
    )


def _store_plan(api: ApiClient, store: int, forecast: dict[str, Any]) -> pd.DataFrame | None:
    """The store's planning data over the forecast's days (one request), or None (a warning) when unavailable."""
    dates = sorted(str(p["date"]) for p in forecast.get("points") or [])
    if not dates:
        return None
    first, last = pd.Timestamp(dates[0]), pd.Timestamp(dates[-1])
    try:
        plan = api.store_plan(store, start=first.date(), days=min(366, (last - first).days + 1))
    except ApiProblem as problem:
        st.warning(f"Planning data unavailable (the plan values of plan days are not shown): {problem.message}")
        return None
    return charts.plan_frame(plan)


def _model_facts(api: ApiClient, forecast: dict[str, Any]) -> None:
    version = forecast.get("model_version")
    st.metric("Model version", f"v{version}" if version else "-")
    st.caption(f"{forecast.get('model_name') or ''} · forecast written {charts.when(forecast.get('created_at'))}")
    try:
        models = api.models()
    except ApiProblem as problem:
        st.warning(f"Model details unavailable: {problem.message}")
        return
    match = next((v for v in models.get("versions", []) if str(v.get("version")) == str(version)), None)
    if match is None:
        st.caption("This version is not in the registry.")
        return
    rmspe = (match.get("metrics") or {}).get("backtest_rmspe")
    st.metric("Backtest RMSPE", f"{rmspe:.2%}" if isinstance(rmspe, (int, float)) else "-")
    st.markdown(f"**Trained at**  \n{charts.when(match.get('created_at'))}")
    st.caption("Aliases: " + (", ".join(match.get("aliases") or []) or "none"))


# --- chain -------------------------------------------------------------------------------------------------
def chain_view(api: ApiClient, settings: Settings) -> None:
    """Total forecast across stores for the horizon and the stores with the largest backtest error."""
    st.header("Chain")
    days = st.slider("Horizon (days)", 7, settings.horizon_days, settings.horizon_days, key="chain_days")
    chain = guarded("the chain forecast", lambda: api.chain_forecast(days))
    if chain is not None:
        frame = charts.chain_frame(chain)
        a, b, c = st.columns(3)
        a.metric("Total forecast", f"{frame['total'].sum():,.0f}")
        b.metric("Stores", f"{chain['stores']:,}")
        c.metric("Model versions", ", ".join(f"v{v}" for v in chain.get("model_versions", [])) or "-")
        st.altair_chart(charts.chain_chart(frame), width="stretch")
        st.caption("Band: sum of the store intervals (a conservative range for the total).")
    st.subheader("Largest backtest errors")
    limit = st.slider("Stores", 5, 50, 15, key="chain_limit")
    errors = guarded("backtest errors", lambda: api.backtest_errors(limit))
    if errors is None:
        return
    st.caption(
        f"Model {errors['model_name']} v{errors['model_version']}: {errors['stores_scored']} stores scored in the last backtest."
    )
    if errors["items"]:
        st.altair_chart(charts.errors_chart(errors["items"]), width="stretch")
        st.dataframe(pd.DataFrame(errors["items"]), hide_index=True, width="stretch")


# --- training ----------------------------------------------------------------------------------------------
def _idempotency_key(kind: str, store: int | None) -> str:
    """The key for this choice: reused until its job finishes or the choice changes (double clicks are harmless)."""
    choice = f"{kind}:{store}"
    current = st.session_state.get("train_key")
    if not current or current["choice"] != choice:
        current = {"choice": choice, "key": f"ui-{uuid.uuid4().hex}"}
        st.session_state["train_key"] = current
    return current["key"]


def training_view(api: ApiClient, settings: Settings) -> None:
    """Start a job (one store or all) and follow the jobs list with live state."""
    st.header("Training")
    with st.container(border=True):
        scope = st.radio("Train", ["One store", "All stores"], horizontal=True, key="train_scope")
        store = None
        if scope == "One store":
            stores = _store_options(api, settings)
            if stores:
                store = st.selectbox(
                    "Store", options=list(stores), format_func=lambda s: store_label(stores[s]), key="train_store"
                )
            else:
                store = st.number_input("Store id", min_value=1, max_value=100_000, value=1, key="train_store_id")
        kind = "store" if scope == "One store" else "all"
        key = _idempotency_key(kind, store)
        if st.button("Start training", type="primary", key="train_start"):
            try:
                body = {"kind": kind} if store is None else {"kind": kind, "store": int(store)}
                job, replayed = api.submit_job(body, key)
            except ApiProblem as problem:
                show_problem(problem, "the training submission")
            else:
                st.session_state["train_last"] = job["id"]
                # The details follow the job just started: the picker keeps its own value across reruns, so an
                # earlier job (of this client, finished) would stay selected and its state shown instead.
                st.session_state["job_pick"] = job["id"]
                if replayed:
                    st.info(f"Job `{job['id']}` was already started by this request; no second job was created.")
                else:
                    st.success(f"Started job `{job['id']}` ({kind}{' ' + str(store) if store else ''}).")
    poll = settings.ui_poll_seconds

    @st.fragment(run_every=poll)
    def jobs_panel() -> None:
        # Fragment reruns outlive the page run that created ``api``: use a client of their own.
        poll_api = ui_client(settings)
        try:
            _jobs_panel(poll_api)
        except Exception as exc:  # noqa: BLE001 - fragment reruns bypass the page's guard
            st.error(f"**Unexpected error** while refreshing jobs: {type(exc).__name__}: {exc}")
        finally:
            poll_api.close()

    jobs_panel()


def _jobs_panel(api: ApiClient) -> None:
    """The jobs table and the details of one job (re-rendered every ``ui_poll_seconds``)."""
    jobs = guarded("training jobs", lambda: api.jobs(limit=20))
    if jobs is None:
        return
    # A finished job frees its idempotency key: the next click trains again.
    current = st.session_state.get("train_key")
    for job in jobs:
        if current and job.get("idempotency_key") == current["key"] and JobState(job["state"]).finished:
            st.session_state.pop("train_key", None)
    _jobs_table(jobs)
    if jobs:
        _job_details(api, jobs)


def _jobs_table(jobs: list[dict[str, Any]]) -> None:
    st.subheader("Jobs")
    if not jobs:
        st.info("No training jobs yet.")
        return
    rows = [
        {
            "id": j["id"],
            "state": state_label(j["state"]),
            "scope": f"store {j['store']}" if j.get("store") else j["kind"],
            "created": charts.when(j.get("created_at")),
            "duration": charts.duration(j),
            "result": charts.champion_decision(j.get("result")) or _short_result(j),
            "logs": j.get("links", {}).get("logs"),
        }
        for j in jobs
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _short_result(job: dict[str, Any]) -> str:
    result = job.get("result")
    if not result:
        return job.get("message") or ""
    if job["state"] != "SUCCEEDED":
        return f"{result.get('error_type') or 'error'}: exit {result.get('exit_code')}"
    return json.dumps(result)[:120]


def _job_details(api: ApiClient, jobs: list[dict[str, Any]]) -> None:
    ids = [j["id"] for j in jobs]
    if st.session_state.get("job_pick") not in ids:  # first render, or the picked job left the list
        last = st.session_state.get("train_last")
        st.session_state["job_pick"] = last if last in ids else ids[0]
    job_id = st.selectbox("Job details", ids, key="job_pick")
    job = next(j for j in jobs if j["id"] == job_id)
    st.markdown(f"**State:** `{state_label(job['state'])}` · duration {charts.duration(job)}")
    if job.get("message"):
        st.caption(job["message"])
    decision = charts.champion_decision(job.get("result"))
    if decision:
        (st.success if "new champion" in decision else st.info)(f"Champion decision: {decision}")
    if job.get("result"):
        st.json(job["result"], expanded=False)
    cols = st.columns(2)
    if JobState(job["state"]).active and cols[1].button("Stop job", key=f"stop_{job_id}"):
        guarded("the stop request", lambda: api.stop_job(job_id))
    if cols[0].toggle("Show logs", key=f"logs_{job_id}"):
        logs = guarded("job logs", lambda: api.job_logs(job_id, tail=200))
        if logs is not None:
            st.caption(f"GET {job.get('links', {}).get('logs')}")
            st.code(logs.get("logs") or "(no output yet)", language="text")


# --- models ------------------------------------------------------------------------------------------------
def models_view(api: ApiClient, settings: Settings) -> None:
    """Registered versions, aliases and backtest metrics next to the baselines."""
    st.header("Models")
    models = guarded("the model registry", api.models)
    if models is None:
        return
    if not models.get("exists"):
        st.info(f"No model named {models.get('name')} is registered yet: start a training job.")
        return
    aliases = models.get("aliases") or {}
    cols = st.columns(max(1, len(aliases)))
    for col, (alias, version) in zip(cols, sorted(aliases.items()), strict=False):  # one column when there are none
        col.metric(alias, f"v{version}")
    st.subheader(f"Versions of {models['name']}")
    st.dataframe(charts.versions_table(models), hide_index=True, width="stretch")
    st.subheader("Backtest metrics: model vs baselines")
    table = charts.metrics_table(models.get("versions") or [])
    if table.empty:
        st.caption("No per-model backtest metrics (h<H>.<model>.rmspe) were logged for these versions.")
    else:
        st.dataframe(table, hide_index=True, width="stretch")
