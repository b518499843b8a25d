"""Streamlit entry script of the operator UI (``sfmlops ui`` runs ``streamlit run`` on this file).

It talks only to the sfmlops API, with ``SFMLOPS_API_KEY``; settings are read fresh on every run.
"""

from __future__ import annotations

import streamlit as st

from app.config import Settings
from app.ui import accuracy, health, views
from app.ui.client import ApiProblem, ui_client

VIEWS = {"Forecast": views.forecast_view, "Chain": views.chain_view, "Training": views.training_view, "Models": views.models_view}
VIEWS["Health"] = health.health_view  # metrics (Prometheus) and open alerts, issue 18
VIEWS["Accuracy"] = accuracy.accuracy_view  # evaluation by horizon/store type/worst stores, live accuracy (17.6, 18.4)


def main() -> None:
    """Render the page: sidebar with API status and navigation, then the chosen view."""
    st.set_page_config(page_title="sfmlops · sales forecasts", page_icon=":material/show_chart:", layout="wide")
    try:
        settings = Settings()
    except Exception as exc:  # noqa: BLE001 - a bad setting is shown, not raised
        st.error(f"**Invalid settings**: {exc}")
        return
    api = ui_client(settings)
    try:
        with st.sidebar:
            st.title("sfmlops")
            st.caption(f"API: {api.base_url}")
            view = st.radio("View", list(VIEWS), key="view")
            try:
                health = api.health()
            except ApiProblem as problem:
                st.error(f"**{problem.title}**: {problem.message}")
            else:
                status = health.get("status", "?")
                colour = {"ok": "green", "degraded": "orange"}.get(status, "red")
                st.caption(f":{colour}[●] API {status}")
                for name, check in (health.get("checks") or {}).items():
                    if not check.get("ok"):
                        st.caption(f"· {name}: {check.get('detail')}")
        try:
            VIEWS[view](api, settings)
        except ApiProblem as problem:
            views.show_problem(problem, view.lower())
        except Exception as exc:  # noqa: BLE001 - the page shows a message, never a stack trace
            st.error(f"**Unexpected error** in the {view} view: {type(exc).__name__}: {exc}")
    finally:
        api.close()


main()
