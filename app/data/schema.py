"""Canonical column names and dtypes shared by every stage (long format, snake_case)."""

from __future__ import annotations

#: Kaggle train.csv column -> canonical column.
TRAIN_COLUMNS: dict[str, str] = {
    "Store": "store",
    "DayOfWeek": "day_of_week",
    "Date": "date",
    "Sales": "sales",
    "Customers": "customers",
    "Open": "open",
    "Promo": "promo",
    "StateHoliday": "state_holiday",
    "SchoolHoliday": "school_holiday",
}

#: Kaggle store.csv column -> canonical column.
STORE_COLUMNS: dict[str, str] = {
    "Store": "store",
    "StoreType": "store_type",
    "Assortment": "assortment",
    "CompetitionDistance": "competition_distance",
    "CompetitionOpenSinceMonth": "competition_open_since_month",
    "CompetitionOpenSinceYear": "competition_open_since_year",
    "Promo2": "promo2",
    "Promo2SinceWeek": "promo2_since_week",
    "Promo2SinceYear": "promo2_since_year",
    "PromoInterval": "promo_interval",
}

SALES_COLUMNS = list(TRAIN_COLUMNS.values())
STORES_COLUMNS = list(STORE_COLUMNS.values())

STATE_HOLIDAYS = ("0", "a", "b", "c")
STORE_TYPES = ("a", "b", "c", "d")
ASSORTMENTS = ("a", "b", "c")
PROMO_INTERVALS = ("Jan,Apr,Jul,Oct", "Feb,May,Aug,Nov", "Mar,Jun,Sept,Dec")

#: Canonical pandas dtypes of the sales frame (``date`` is datetime64[ns] at day precision).
SALES_DTYPES: dict[str, str] = {
    "store": "int32",
    "day_of_week": "int8",
    "sales": "int32",
    "customers": "int32",
    "open": "int8",
    "promo": "int8",
    "state_holiday": "object",
    "school_holiday": "int8",
}

STORES_INT_COLUMNS = ("store", "promo2")
STORES_FLOAT_COLUMNS = (
    "competition_distance",
    "competition_open_since_month",
    "competition_open_since_year",
    "promo2_since_week",
    "promo2_since_year",
)
