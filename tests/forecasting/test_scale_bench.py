"""``sfmlops bench scale`` at a small size on the local stack: the JSON line's fields, fan-out == baseline."""

from __future__ import annotations

import pytest

from app.bench import scale


def test_parse_sizes() -> None:
    assert scale.parse_sizes("1,4,16") == [1.0, 4.0, 16.0]
    assert scale.parse_sizes(" 0.01 ,2") == [0.01, 2.0]
    assert [scale.stores_for(s) for s in (1, 4, 16)] == [1115, 4460, 17840]
    with pytest.raises(ValueError, match="comma-separated numbers, not 'x'"):
        scale.parse_sizes("1,x")
    with pytest.raises(ValueError, match="gives no store"):
        scale.parse_sizes("0.0001")
    with pytest.raises(ValueError, match="empty"):
        scale.parse_sizes(" , ")


def test_last_attempts_counts_each_task_once() -> None:
    """Ray's state API lists one entry per attempt: a task run again is counted once, as its last attempt."""
    from types import SimpleNamespace as T

    listed = [
        T(task_id="a", attempt_number=0, name="fit", node_id="n1", state="FAILED"),
        T(task_id="b", attempt_number=0, name="refit", node_id="n1", state="FINISHED"),
        T(task_id="a", attempt_number=1, name="fit", node_id="n2", state="FINISHED"),
    ]
    tasks = scale.last_attempts(listed)
    assert sorted((t["name"], t["node_id"], t["state"], t["attempt"]) for t in tasks) == [
        ("fit", "n2", "FINISHED", 1), ("refit", "n1", "FINISHED", 0)]
    assert scale.last_attempts(list(reversed(listed))) == [
        {"name": "fit", "node_id": "n2", "state": "FINISHED", "attempt": 1},
        {"name": "refit", "node_id": "n1", "state": "FINISHED", "attempt": 0}]


def test_train_args_spread_only_the_fanned_out_lightgbm_fits() -> None:
    def option(args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    fanned = scale.train_args(20, 1, 250, 1, lgbm_workers=2)
    assert option(fanned, "--lgbm-workers") == "2" and "--in-driver" not in fanned
    baseline = scale.train_args(20, 1, 250, 1, in_driver=True, lgbm_workers=2)  # the old path: one process, one fit
    assert option(baseline, "--lgbm-workers") == "1" and "--in-driver" in baseline
    assert option(scale.train_args(20, 1, 250, 1), "--lgbm-workers") == "1"


def _bench_tables(settings) -> list[str]:
    from app.db import connect

    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_scale_%'")
        names = [r[0] for r in cur.fetchall()]
    conn.close()
    return names


@pytest.mark.integration
@pytest.mark.slow
def test_bench_scale_small_size_line(settings) -> None:
    stack = settings  # the running stack's Postgres and Ray (the bench logs nothing to MLflow)
    before = set(_bench_tables(stack))
    lines: list[dict] = []
    out = scale.run(stack, [0.003], rounds=5, start="2014-06-01", fake_size=0, timeout_s=900, emit=lines.append)
    assert out == lines and len(lines) == 1
    [line] = lines
    assert line["bench"] == "scale" and line["size"] == "0.003x" and line["stores"] == 3
    assert line["rows"] == line["generated_rows"] == 3 * 378  # 2014-06-01 .. 2015-06-13
    for key in ("wall_s", "rows_per_s", "peak_rss_mb", "load_db_s"):
        assert line[key] > 0, key
    assert line["rows_per_s"] == pytest.approx(line["rows"] / line["wall_s"], abs=0.051)  # rounded to 0.1
    # Every planned task ran as a Ray task; the baseline ran all of them in its driver.
    assert line["ray_tasks"] == line["pipeline_tasks"] >= 7 and line["nodes"] == 1
    assert isinstance(line["ray_task_retries"], int) and line["ray_task_retries"] >= 0
    assert line["baseline"]["ray_tasks"] == 0 and line["baseline"]["peak_rss_mb"] > 0
    assert line["peak_rss_process"] in ("driver", "task worker")
    assert set(line["rmspe"]) == {"lgbm", "ses", "ensemble", "seasonal_naive", "median_dow_promo"}
    assert line["metrics_equal"] is True and line["metrics_max_abs_diff"] <= scale.METRICS_TOL
    assert len(line["load_avg_before"]) == len(line["load_avg_after"]) == 3 and line["lgbm_workers"] == 1
    # Its own tables are gone again.
    assert set(_bench_tables(stack)) == before
