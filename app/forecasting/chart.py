"""A PNG of one store's recent actual sales and its stored batch forecast (with the interval), for reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings


def _frame(cur: Any, sql: str, params: tuple[Any, ...]) -> pd.DataFrame:  # psycopg2 cursor
    """The rows of one query as a DataFrame (through the cursor: pandas warns on a raw DBAPI connection)."""
    import pandas as pd

    cur.execute(sql, params)
    frame = pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    if "date" in frame:
        frame["date"] = pd.to_datetime(frame["date"])
    return frame


def store_frames(settings: Settings, store: int, days: int = 90) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(actuals, forecast)``: the last ``days`` sales rows of ``store`` and its latest model version's forecast."""
    from app.db import connect

    t_sales, t_fc = settings.table_sales, settings.table_forecasts
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            actual = _frame(
                cur, f"SELECT date, sales, open FROM {t_sales} WHERE store = %s ORDER BY date DESC LIMIT %s", (store, days)
            ).sort_values("date")
            forecast = _frame(
                cur,
                f"SELECT date, value, lower, upper, model_version FROM {t_fc} WHERE store = %s AND model_version = "
                f"(SELECT model_version FROM {t_fc} WHERE store = %s ORDER BY created_at DESC LIMIT 1) ORDER BY date",
                (store, store),
            )
    finally:
        conn.close()
    return actual, forecast


def forecast_chart(settings: Settings, store: int, out: Path, days: int = 90) -> Path:
    """Plot the last ``days`` of actuals and the stored forecast (with its interval) of ``store`` to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    actual, fc = store_frames(settings, store, days)
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(actual["date"], actual["sales"], color="#333", lw=1.2, label="actual sales")
    if not fc.empty:
        ax.fill_between(fc["date"], fc["lower"], fc["upper"], color="#4c78a8", alpha=0.25, label="interval")
        ax.plot(fc["date"], fc["value"], color="#4c78a8", lw=1.6, label=f"forecast (model v{fc['model_version'].iloc[0]})")
    ax.set_title(f"Store {store}: last {days} days and the batch forecast")
    ax.set_ylabel("sales")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
