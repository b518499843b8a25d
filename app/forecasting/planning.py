"""Planning data (issue 17.5): the known-future inputs a retailer knows in advance, as versioned uploads.

A plan row is ``(store, date, open, promo, state_holiday, school_holiday)``: the store's opening, promotion
and holidays of one day. Rows arrive as JSON (``POST /v1/planning``), as a Kaggle ``test.csv``-style body
(``POST /v1/planning/csv``: ``Id,Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday``, ``Id`` optional
and ignored, ``DayOfWeek`` checked against ``Date``) or from a file (``sfmlops plan upload FILE.csv``); all
three go through :func:`upload`, so they are validated alike and by the sales rows' own rules
(:func:`app.ingest.schema.field_problem`: a known store, ``YYYY-MM-DD`` dates, 0/1 flags, the state-holiday
codes of the ingestion). An upload with any bad row is refused as a whole, naming every bad row (its index or
line, the field and the reason), and nothing is stored; a good one becomes one new version in
``{table_planning}``. For a (store, date) the row of the newest version wins (:func:`read_plan`); the batch
forecast (:func:`app.forecasting.batch.forecast`) uses those rows and projects the inputs of the other days.

Standard library only at import (the API's Lambda package ships this module); the statements work on psycopg2
and psycopg 3 connections alike.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.data.schema import TRAIN_COLUMNS
from app.ingest.schema import FIELDS, INT32_MAX, field_problem

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

#: The columns of a plan row (the known-future inputs of one store-day), in table order.
PLAN_COLUMNS = ("store", "date", "open", "promo", "state_holiday", "school_holiday")
#: Fields (and JSON types) a plan row must have, in the order the rules check them; ``day_of_week`` is optional
#: in JSON rows (checked against ``date`` when given) and required in CSV files.
ROW_FIELDS = {name: kind for name, kind in FIELDS.items() if name in PLAN_COLUMNS}
ROW_FIELDS_WITH_DOW = {name: kind for name, kind in FIELDS.items() if name in (*PLAN_COLUMNS, "day_of_week")}
#: Kaggle ``test.csv`` column -> plan field (the names of ``train.csv``, :data:`app.data.schema.TRAIN_COLUMNS`).
CSV_COLUMNS = {kaggle: name for kaggle, name in TRAIN_COLUMNS.items() if name in ROW_FIELDS_WITH_DOW}
#: Columns of ``test.csv`` a plan file may have and that are ignored.
CSV_IGNORED = ("Id",)
#: How many problems an error message spells out (the exception keeps them all).
MESSAGE_PROBLEMS = 20
_INT = re.compile(r"[+-]?[0-9]+")
_INTEGRAL_FLOAT = re.compile(r"[+-]?[0-9]+\.0*")  # "1.0": pandas writes Kaggle's Open column so


@dataclass(frozen=True)
class PlanProblem:
    """One bad row (or the header) of an upload.

    Attributes:
        where: ``("rows", index)`` of a JSON row (0-based), ``("line", number)`` of a CSV line (1-based, the
            header is line 1), ``("body", 0)`` for the upload as a whole.
        field: The field (the CSV column as the file names it); ``""`` when it concerns no one field.
        reason: What is wrong.
    """

    where: tuple[str, int]
    field: str
    reason: str

    @property
    def location(self) -> str:
        """Dotted location in the API's error shape: ``body.rows.3.open``, ``body.line.5.Open``."""
        parts = ["body"] if self.where[0] == "body" else ["body", self.where[0], str(self.where[1])]
        return ".".join([*parts, *([self.field] if self.field else [])])

    def __str__(self) -> str:
        kind, n = self.where
        place = {"rows": f"row {n}", "line": f"line {n}"}.get(kind, "upload")
        return f"{place}{', ' + self.field if self.field else ''}: {self.reason}"


class PlanError(ValueError):
    """An upload refused as a whole; ``problems`` names every bad row (``rows``: how many the upload had; 0 when it
    was refused before its rows were read: a bad header, no rows)."""

    def __init__(self, source: str, problems: list[PlanProblem], rows: int) -> None:
        self.source = source
        self.problems = problems
        self.rows = rows
        shown = "\n  - ".join(str(p) for p in problems[:MESSAGE_PROBLEMS])
        more = f"\n  ... and {len(problems) - MESSAGE_PROBLEMS} more" if len(problems) > MESSAGE_PROBLEMS else ""
        super().__init__(f"{self.summary}:\n  - {shown}{more}")

    @property
    def summary(self) -> str:
        bad = len({p.where for p in self.problems})
        what = f"{bad} bad row(s) of {self.rows}" if self.rows else "; ".join(str(p) for p in self.problems[:3])
        return f"plan {self.source} refused ({what}); nothing was stored"


@dataclass(frozen=True)
class PlanRow:
    """One validated plan row."""

    store: int
    date: dt.date
    open: int
    promo: int
    state_holiday: str
    school_holiday: int


#: One row of an upload: where it is (see :attr:`PlanProblem.where`) and its fields.
Entry = tuple[tuple[str, int], Any]


def json_entries(rows: Sequence[Any]) -> list[Entry]:
    """The rows of a JSON upload as entries (``("rows", index)``)."""
    return [(("rows", i), row) for i, row in enumerate(rows)]


def _cell(value: str, kind: str) -> Any:  # int, str or None
    """A CSV cell as the JSON value the rules expect: ints for integer fields, None for an empty cell."""
    value = value.strip()
    if value == "":
        return None
    if kind == "int":
        if _INT.fullmatch(value):
            return int(value)
        if _INTEGRAL_FLOAT.fullmatch(value):
            return int(value.split(".", 1)[0])
    return value  # not a number: the rules name its type


def csv_entries(text: str, source: str = "body") -> tuple[list[Entry], dict[str, str]]:
    """Parse a Kaggle ``test.csv``-style text into entries (``("line", number)``) with the plan fields.

    Returns:
        ``(entries, names)``: the rows, and plan field -> the file's column name (for problems).

    Raises:
        PlanError: a missing, unknown or repeated column in the header, or no header at all.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise PlanError(source, [PlanProblem(("line", 1), "", f"cannot be parsed as CSV: {exc}")], 0) from exc
    if not any(header):
        raise PlanError(source, [PlanProblem(("body", 0), "", f"no header line (expected {','.join(CSV_COLUMNS)})")], 0)
    problems = [PlanProblem(("line", 1), c, "missing column") for c in CSV_COLUMNS if c not in header]
    problems += [
        PlanProblem(("line", 1), c, f"unknown column (a plan file has {','.join((*CSV_IGNORED, *CSV_COLUMNS))})")
        for c in header if c not in CSV_COLUMNS and c not in CSV_IGNORED
    ]
    problems += [PlanProblem(("line", 1), c, "repeated column") for i, c in enumerate(header) if c in header[:i]]
    if problems:
        raise PlanError(source, problems, 0)
    entries: list[Entry] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue  # blank line
            if len(cells) != len(header):
                where = ("line", line)
                entries.append((where, PlanProblem(where, "", f"{len(cells)} field(s), the header has {len(header)}")))
                continue
            entries.append((("line", line), {
                CSV_COLUMNS[h]: _cell(v, FIELDS[CSV_COLUMNS[h]]) for h, v in zip(header, cells, strict=True) if h in CSV_COLUMNS
            }))
    except csv.Error as exc:
        raise PlanError(source, [PlanProblem(("line", reader.line_num), "", f"cannot be parsed as CSV: {exc}")], 0) from exc
    return entries, {name: kaggle for kaggle, name in CSV_COLUMNS.items()}


def store_ids(entries: Sequence[Entry]) -> set[int]:
    """The store ids the entries name that could exist (integers in 1..INT32_MAX), to look up which do."""
    stores = (row.get("store") for _, row in entries if isinstance(row, Mapping))
    return {s for s in stores if isinstance(s, int) and not isinstance(s, bool) and 0 < s <= INT32_MAX}


def check(entries: Sequence[Entry], known_stores: set[int], source: str = "body", names: Mapping[str, str] | None = None,
          require_day_of_week: bool = False) -> list[PlanRow]:
    """Validate every entry with the sales rows' rules; the rows, or :class:`PlanError` naming every bad one.

    Args:
        entries: The rows (:func:`json_entries`, :func:`csv_entries`); a :class:`PlanProblem` in place of a row
            is a problem found while parsing it.
        known_stores: The store ids that exist (``{table_stores}``).
        source: Name of the upload in messages.
        names: Plan field -> the name the upload uses (CSV columns); default the plan field names.
        require_day_of_week: Every row must carry ``day_of_week`` (CSV); otherwise it is checked when present
            (not null).

    Raises:
        PlanError: no rows, or any bad row (first problem of each, duplicates of a (store, date) included).
    """
    names = names or {}
    problems: list[PlanProblem] = []
    rows: list[PlanRow] = []
    seen: dict[tuple[int, dt.date], tuple[str, int]] = {}
    if not entries:
        raise PlanError(source, [PlanProblem(("body", 0), "", "no rows")], 0)
    for where, row in entries:
        if isinstance(row, PlanProblem):  # found while parsing the row
            problems.append(row)
            continue
        if not isinstance(row, Mapping):
            problems.append(PlanProblem(where, "", f"a row must be an object with {', '.join(PLAN_COLUMNS)}"))
            continue
        extra = sorted(str(k) for k in row if k not in ROW_FIELDS_WITH_DOW)
        if extra:
            problems.append(PlanProblem(where, extra[0], f"unknown field (a plan row has {', '.join(ROW_FIELDS_WITH_DOW)})"))
            continue
        fields = ROW_FIELDS_WITH_DOW if require_day_of_week or row.get("day_of_week") is not None else ROW_FIELDS
        problem = field_problem(row, fields, known_stores, max_future_days=None)
        if problem is not None:
            problems.append(PlanProblem(where, names.get(problem[0], problem[0]), problem[1]))
            continue
        key = (row["store"], dt.date.fromisoformat(row["date"]))
        if key in seen:
            first = seen[key]
            problems.append(PlanProblem(where, names.get("date", "date"),
                                        f"store {key[0]} on {key[1]} repeats {first[0].rstrip('s')} {first[1]} of this upload"))
            continue
        seen[key] = where
        rows.append(PlanRow(row["store"], key[1], row["open"], row["promo"], row["state_holiday"], row["school_holiday"]))
    if problems:
        raise PlanError(source, problems, len(entries))
    return rows


def known_stores(cur: Any, settings: Settings, ids: set[int]) -> set[int]:  # a DB-API cursor
    """Which of ``ids`` exist in ``{table_stores}``."""
    if not ids:
        return set()
    cur.execute(f"SELECT store FROM {settings.table_stores} WHERE store = ANY(%s::integer[])", (sorted(ids),))  # name from settings
    return {int(r[0]) for r in cur.fetchall()}


def store_plan(cur: Any, settings: Settings, rows: Sequence[PlanRow], client: str) -> dict[str, Any]:
    """Insert ``rows`` as a new version of ``{table_planning}`` (in the cursor's transaction); its summary."""
    table = settings.table_planning
    # One version at a time: a later version number is a later commit (so "newest version wins" means newest).
    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s::text))", (table,))
    cur.execute("SELECT nextval(%s::regclass), now()", (f"{table}_version_seq",))
    version, uploaded_at = cur.fetchone()
    cur.execute(
        f"INSERT INTO {table} (store, date, open, promo, state_holiday, school_holiday, version, client)"
        " SELECT u.*, %s::bigint, %s::text FROM unnest(%s::integer[], %s::date[], %s::smallint[], %s::smallint[], %s::text[], %s::smallint[]) AS u",
        (version, client, [r.store for r in rows], [r.date for r in rows], [r.open for r in rows], [r.promo for r in rows],
         [r.state_holiday for r in rows], [r.school_holiday for r in rows]),
    )
    return {
        "version": int(version), "rows": len(rows), "stores": len({r.store for r in rows}),
        "first_date": min(r.date for r in rows).isoformat(), "last_date": max(r.date for r in rows).isoformat(),
        "uploaded_at": uploaded_at.isoformat(), "client": client,
    }


def upload(conn: Any, settings: Settings, entries: Sequence[Entry], client: str, source: str = "body",
           names: Mapping[str, str] | None = None, require_day_of_week: bool = False) -> dict[str, Any]:
    """Validate ``entries`` (:func:`check`, stores looked up in ``{table_stores}``) and store them as one new
    version, in ``conn``'s transaction (the caller commits). The one path of the API routes and the CLI.

    Returns:
        ``{"version", "rows", "stores", "first_date", "last_date", "uploaded_at", "client"}``.

    Raises:
        PlanError: the upload is refused (nothing is written).
    """
    with conn.cursor() as cur:
        rows = check(entries, known_stores(cur, settings, store_ids(entries)), source, names, require_day_of_week)
        return store_plan(cur, settings, rows, client)


def upload_csv(conn: Any, settings: Settings, text: str, client: str, source: str = "body") -> dict[str, Any]:
    """:func:`upload` of a Kaggle ``test.csv``-style text (:func:`csv_entries`)."""
    entries, names = csv_entries(text, source)
    return upload(conn, settings, entries, client, source, names, require_day_of_week=True)


def read_plan(conn: Any, settings: Settings, first: dt.date, last: dt.date, stores: Sequence[int] | None = None) -> list[tuple]:
    """The plan of the days ``first..last`` (of ``stores``): per (store, date) the row of the newest version.

    Returns:
        ``[(store, date, open, promo, state_holiday, school_holiday, version), ...]`` ordered by store and date.
    """
    where = " AND store = ANY(%s::integer[])" if stores else ""
    params: tuple[Any, ...] = (first, last, sorted(int(s) for s in stores)) if stores else (first, last)
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT DISTINCT ON (store, date) store, date, open, promo, state_holiday, school_holiday, version"
            f" FROM {settings.table_planning} WHERE date BETWEEN %s AND %s{where} ORDER BY store, date, version DESC",
            params,
        )
        return cur.fetchall()


def versions(conn: Any, settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` uploads: version, when, by whom, rows, stores and dates."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT version, min(uploaded_at), min(client), count(*), count(DISTINCT store), min(date), max(date)"
            f" FROM {settings.table_planning} GROUP BY version ORDER BY version DESC LIMIT %s",
            (limit,),
        )
        keys = ("version", "uploaded_at", "client", "rows", "stores", "first_date", "last_date")
        return [dict(zip(keys, r, strict=True)) for r in cur.fetchall()]
