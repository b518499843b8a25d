"""The data assets the DAGs hand to each other (Airflow 3 assets; declared only, nothing is looked up).

``sales_ingest_daily`` names :data:`SALES` as the outlet of its data-quality task, so each successful
ingest records an asset event ("new sales rows passed the check"); ``sales_train_weekly`` names it as the
inlet of its training task and :data:`FORECASTS` as the outlet of its forecast check. The weekly DAG keeps
its cron schedule: training is weekly by design, and scheduling it on the asset (or an
``AssetOrTimeSchedule``) would retrain after every daily ingest. The assets give the lineage in the UI
(which run produced the sales a training consumed) and a hook for event-driven DAGs later.

The URIs are logical (``sfmlops://``): the tables behind them are run-time settings (``table_sales``,
``table_forecasts``), the same asset on every backend.
"""

from __future__ import annotations

from airflow.sdk import Asset

SALES = Asset(name="sfmlops_sales", uri="sfmlops://postgres/sales", group="sfmlops")
FORECASTS = Asset(name="sfmlops_forecasts", uri="sfmlops://postgres/forecasts", group="sfmlops")
