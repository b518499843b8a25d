"""``sfmlops bench accuracy`` on an offline dataset of 3 real stores: the line's structure and its figures."""

from __future__ import annotations

import json

import pandas as pd
import pytest


def test_bench_accuracy_line(real_data, tmp_path) -> None:
    from app.bench.accuracy import run
    from app.config import Settings

    sales, stores = real_data
    (tmp_path / "data").mkdir()
    sales[sales["store"].isin([1, 2, 3])].to_parquet(tmp_path / "data" / "sales.parquet")
    stores.to_parquet(tmp_path / "data" / "stores.parquet")
    settings = Settings().model_copy(update={"state_dir": tmp_path})
    out = run(settings, horizon=48, origins=2, source="dataset", threads=1)
    json.dumps(out)  # one JSON line
    assert out["bench"] == "accuracy" and out["stores"] == 3 and len(out["origins"]) == 2
    end = sales["date"].max()
    assert out["origins"] == [str((end - pd.Timedelta(days=d)).date()) for d in (96, 48)]
    models = out["models"]
    assert set(models) == {"lgbm", "ses", "ensemble", "seasonal_naive", "median_dow_promo"}
    for name, rec in models.items():
        assert list(rec["buckets"]) == ["1-7", "8-14", "15-28", "29-48"], name
        assert set(rec["h7_by_origin"]) == set(rec["rmspe_by_origin"]) == set(out["origins"]), name
        assert 0 <= rec["coverage_80"] <= rec["coverage_95"] <= 1, name
    # The ensemble of each origin is fitted on the other origin only.
    assert set(out["ensemble_weights"]) == set(out["origins"])
    for w in out["ensemble_weights"].values():
        assert sum(w.values()) == pytest.approx(1.0, abs=2e-3)
    champ = out["champion"]
    cands = {k: v["rmspe"] for k, v in models.items() if k in ("lgbm", "ses", "ensemble")}
    assert champ["model"] == min(cands, key=cands.get)
    with pytest.raises(ValueError, match="origins must be >= 2"):
        run(settings, origins=1, source="dataset")
