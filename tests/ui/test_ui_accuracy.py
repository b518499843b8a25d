"""The Accuracy view (AppTest) against the real API over a scenario of real data.

The scenario (tests/forecasting/live_accuracy_support.py): a fresh and a deliberately stale version of the
test's own model, each with a training run whose metrics carry the breakdown (RMSPE by horizon bucket, store
type, worst stores), and their stored forecasts of days whose real actuals are in the test's sales table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from uitest_support import UI_APP

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "forecasting"))
sys.path.insert(0, str(ROOT / "tests" / "dags"))

pytestmark = pytest.mark.integration


def _charts(at: AppTest) -> list[tuple[dict, int]]:
    out = []
    for chart in at.get("vega_lite_chart"):
        rows = sum(pa.ipc.open_stream(ds.data.data).read_all().num_rows for ds in chart.proto.datasets)
        out.append((json.loads(chart.proto.spec), rows))
    return out


def test_accuracy_view_shows_breakdown_and_live_drift(stack, rossmann_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    import live_accuracy_support as support
    from e2e_support import api_server

    from app.data.kaggle import load_stores, load_train

    settings = support.isolated(stack)
    types = load_stores(rossmann_dir / "store.csv").set_index("store")["store_type"]
    try:
        versions = support.build(settings, load_train(rossmann_dir / "train.csv.gz"), types)
        stale = versions["stale"]["version"]
        with api_server(settings) as (url, key):
            monkeypatch.setenv("SFMLOPS_API_URL", url)
            monkeypatch.setenv("SFMLOPS_API_KEY", key)
            at = AppTest.from_file(str(UI_APP), default_timeout=60)
            at.run()
            at.sidebar.radio(key="view").set_value("Accuracy").run()
            assert not at.exception, [e.value for e in at.exception]
            # nothing scored yet
            assert any("has been scored yet" in i.value for i in at.info)
            charts = _charts(at)
            titles = [json.dumps(spec.get("title")) for spec, _ in charts]
            assert len(charts) == 3 and "Horizon bucket" in titles[0] and "Store type" in titles[1] and "Worst stores" in titles[2]
            assert [rows for _, rows in charts][0] == 4 and charts[2][1] == 10
            assert charts[1][1] == len(set(types.reindex(support.STORES)))
            # after the daily scoring: the drift banner, the live chart and the versions table
            assert httpx.post(f"{url}/v1/accuracy/score", json={}, headers={"X-API-Key": key}, timeout=60).status_code == 200
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert any(e.value.startswith(f"**Drift** of the served version v{stale}") for e in at.error)
            live = _charts(at)[-1]
            assert "Live RMSPE per day" in json.dumps(live[0].get("title"))
            status = httpx.get(f"{url}/v1/accuracy", params={"days": 60}, headers={"X-API-Key": key}, timeout=60).json()
            assert live[1] == sum(len(v["days"]) for v in status["versions"]) > 2 * 30  # every scored day of both versions
            assert len(live[0]["layer"]) == 2  # the lines and the dashed drift thresholds
            table = at.dataframe[0].value
            assert set(table["version"]) == {f"v{stale}", f"v{versions['fresh']['version']}"}
            assert table.set_index("version").loc[f"v{stale}", "drift"] == "yes"
            assert {"live 1-7", "live 8-14", "live 15-28", "live 29-48"} <= set(table.columns)
    finally:
        support.cleanup(settings)
