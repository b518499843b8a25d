"""Data: the Kaggle loader on the real files and on malformed ones, and the synthetic generator."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from app.data import kaggle, load_dataset, prepare, synthetic
from app.data.validation import DataValidationError

TRAIN_HEADER = "Store,DayOfWeek,Date,Sales,Customers,Open,Promo,StateHoliday,SchoolHoliday"
STORE_HEADER = (
    '"Store","StoreType","Assortment","CompetitionDistance","CompetitionOpenSinceMonth",'
    '"CompetitionOpenSinceYear","Promo2","Promo2SinceWeek","Promo2SinceYear","PromoInterval"'
)
GOOD_ROWS = ["1,6,2015-06-13,4256,502,1,0,0,0", "2,6,2015-06-13,2574,319,1,0,0,0", "1,5,2015-06-12,4000,480,1,1,0,0"]


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    text = "\n".join(lines) + "\n"
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_real_shared_data_loads_with_expected_shape(rossmann_dir):
    sales = kaggle.load_train(rossmann_dir / "train.csv.gz")
    stores = kaggle.load_stores(rossmann_dir / "store.csv")
    assert len(sales) == 963_689
    assert sales["store"].nunique() == 1115
    assert len(stores) == 1115
    assert str(sales["date"].min().date()) == "2013-01-01"
    assert str(sales["date"].max().date()) == "2015-06-13"
    assert set(sales["state_holiday"].unique()) <= {"0", "a", "b", "c"}
    assert not sales.duplicated(["store", "date"]).any()
    # Sorted for downstream consumers.
    assert sales["store"].is_monotonic_increasing


def test_good_small_file_gzip_and_plain(tmp_path):
    for name in ("train.csv", "train.csv.gz"):
        frame = kaggle.load_train(write(tmp_path, name, [TRAIN_HEADER, *GOOD_ROWS]))
        assert len(frame) == 3
        assert frame.loc[(frame.store == 1) & (frame.date == "2015-06-12"), "promo"].item() == 1


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["1,6,2015-06-13,abc,502,1,0,0,0"], "column 'sales': 1 value(s) that are not numbers"),
        (["1,6,2015-13-45,4256,502,1,0,0,0"], "column 'date': 1 value(s) not YYYY-MM-DD"),
        (["1,6,2015-06-13,-5,502,1,0,0,0"], "column 'sales': 1 negative value(s)"),
        (["1,6,2015-06-13,4256,502,1,0,x,0"], "column 'state_holiday'"),
        (["1,6,2015-06-13,4256,502,2,0,0,0"], "column 'open': 1 value(s) not 0/1"),
        (["1,3,2015-06-13,4256,502,1,0,0,0"], "column 'day_of_week': 1 row(s) disagree with the date"),
        (["1,6,2015-06-13,4256,502,1,0,0,0", "1,6,2015-06-13,4000,500,1,0,0,0"], "1 duplicate (store, date) key(s)"),
        (["1,6,2015-06-13,4256,502,0,0,0,0"], "closed (open=0) but with sales > 0"),
    ],
)
def test_malformed_train_rows_are_named(tmp_path, rows, expected):
    path = write(tmp_path, "train.csv", [TRAIN_HEADER, *rows])
    with pytest.raises(DataValidationError) as exc:
        kaggle.load_train(path)
    assert expected in str(exc.value)
    assert str(path) in str(exc.value)


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    path = write(tmp_path, "train.csv", [TRAIN_HEADER, "1,6,2015-06-13,-1,502,1,0,0,0", "1,6,2015-06-13,10,5,1,0,z,0"])
    with pytest.raises(DataValidationError) as exc:
        kaggle.load_train(path)
    assert len(exc.value.problems) >= 3  # negative, bad holiday, duplicate key


def test_missing_column_is_named(tmp_path):
    path = write(tmp_path, "train.csv", ["Store,DayOfWeek,Date,Sales,Open,Promo,StateHoliday,SchoolHoliday", "1,6,2015-06-13,4256,1,0,0,0"])
    with pytest.raises(DataValidationError, match="missing column.*Customers"):
        kaggle.load_train(path)


def test_store_file_problems_are_named(tmp_path):
    path = write(tmp_path, "store.csv", [STORE_HEADER, '1,"z","a",1270,9,2008,0,,,""', '1,"a","a",-3,9,2008,0,,,""'])
    with pytest.raises(DataValidationError) as exc:
        kaggle.load_stores(path)
    text = str(exc.value)
    assert "duplicate store id" in text and "store_type" in text and "competition_distance" in text


def test_missing_files_and_folder_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        kaggle.find_files(tmp_path / "nope")
    write(tmp_path, "store.csv", [STORE_HEADER])
    with pytest.raises(FileNotFoundError, match="train.csv"):
        kaggle.find_files(tmp_path)


def test_synthetic_is_deterministic_for_a_seed():
    a_sales, a_stores = synthetic.generate(seed=7, n_stores=30, start="2014-01-01", end="2014-03-31")
    b_sales, b_stores = synthetic.generate(seed=7, n_stores=30, start="2014-01-01", end="2014-03-31")
    c_sales, _ = synthetic.generate(seed=8, n_stores=30, start="2014-01-01", end="2014-03-31")
    pd.testing.assert_frame_equal(a_sales, b_sales)
    pd.testing.assert_frame_equal(a_stores, b_stores)
    assert not a_sales["sales"].equals(c_sales["sales"])


def test_synthetic_has_rossmann_shape():
    sales, stores = synthetic.generate(seed=42, n_stores=200, start="2013-01-01", end="2014-12-31")
    assert len(sales) == 200 * 730 and sales["store"].nunique() == 200
    sundays = sales[sales["day_of_week"] == 7]
    assert sundays["open"].mean() < 0.1  # closed on Sundays but a few stores
    assert (sales.loc[sales["open"] == 0, "sales"] == 0).all()
    christmas = sales[sales["date"] == "2014-12-25"]
    assert (christmas["state_holiday"] == "c").all() and christmas["open"].sum() == 0
    open_days = sales[sales["open"] == 1]
    assert open_days.groupby("promo")["sales"].mean()[1] > open_days.groupby("promo")["sales"].mean()[0] * 1.1
    assert set(stores["store_type"]) <= {"a", "b", "c", "d"} and sales["school_holiday"].mean() > 0.05
    december = open_days[open_days["date"].dt.month == 12]["sales"].mean()
    assert december > open_days["sales"].mean()  # yearly seasonality


def test_prepare_writes_canonical_parquet(tmp_path, settings):
    s = settings.model_copy(update={"synthetic_stores": 15, "synthetic_start": "2015-01-01", "synthetic_end": "2015-02-28"})
    result = prepare(s, out_dir=tmp_path)
    assert result.rows == 15 * 59 and result.source == "synthetic:seed=42"
    sales, stores = load_dataset(s, data_dir=tmp_path)
    assert list(sales.columns)[:3] == ["store", "day_of_week", "date"] and len(stores) == 15
    with pytest.raises(FileNotFoundError, match="sfmlops data"):
        load_dataset(s, data_dir=tmp_path / "empty")
