"""The producer: daily store rows as JSON to the sales topic (``sfmlops produce``).

* ``replay`` sends the rows of a date range, oldest day first, as fast as the broker takes them.
* ``live`` sends one day per interval, stamped with today's date, as the original system did:
  it walks through the source days from ``start`` and re-dates each one to the current day.

Records follow :mod:`app.ingest.schema` (key = store id); rows are validated before sending and
invalid ones are counted as failed, never sent. Durability: ``acks=all``, idempotent producer
(ordering per key survives retries), retries bounded by ``delivery_timeout_ms``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from app.ingest.schema import FIELDS, FLAG_FIELDS, INT32_MAX, SCHEMA_VERSION, STATE_HOLIDAYS, validate_row

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings

Mode = Literal["replay", "live"]


def ensure_topic(settings: Settings, topic: str | None = None, partitions: int | None = None) -> dict:
    """Create the sales topic with partitions and retention from the settings if it does not exist.

    Returns:
        ``{"topic", "partitions", "created"}``; an existing topic keeps its partition count.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from app.kafka_client import kafka_client_config

    name = topic or settings.kafka_topic
    admin = KafkaAdminClient(**kafka_client_config(settings, "sfmlops-admin", request_timeout_ms=15000))
    try:
        created = True
        try:
            admin.create_topics(
                [
                    NewTopic(
                        name,
                        num_partitions=partitions or settings.kafka_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        topic_configs={"retention.ms": str(settings.kafka_retention_ms)},
                    )
                ]
            )
        except TopicAlreadyExistsError:
            created = False
        meta = admin.describe_topics([name])
        count = len(meta[0]["partitions"]) if meta else 0
    finally:
        admin.close()
    return {"topic": name, "partitions": count, "created": created}


def make_producer(settings: Settings, **overrides: Any):  # kafka.KafkaProducer
    """A durable KafkaProducer: acks=all, idempotence (ordering per key), bounded retries, batching.

    Batches of ``producer_batch_bytes`` per partition, ``producer_linger_ms`` and ``producer_compression``
    (lz4 by default: the broker stores and Spark reads the compressed batches, so fewer bytes cross the
    loopback and the log) come from the settings; address and authentication from :func:`app.kafka_client.kafka_client_config`.
    """
    from kafka import KafkaProducer

    from app.kafka_client import kafka_client_config

    compression = (settings.producer_compression or "none").lower()
    config: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2**31 - 1,
        "delivery_timeout_ms": 120_000,
        "request_timeout_ms": 30_000,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": settings.producer_linger_ms,
        "batch_size": settings.producer_batch_bytes,
        "compression_type": None if compression == "none" else compression,
    }
    config.update(overrides)
    return KafkaProducer(**kafka_client_config(settings, config.pop("client_id", "sfmlops-producer"), **config))


def to_record(row: dict) -> dict:
    """A canonical sales row (store, date, ...) as a schema-versioned record."""
    date = row["date"]
    record = {"schema_version": SCHEMA_VERSION}
    for name in FIELDS:
        if name == "schema_version":
            continue
        value = row[name]
        if name == "date":
            value = (date.date() if hasattr(date, "date") else date).isoformat()
        elif name == "state_holiday":
            value = str(value)
        else:
            value = int(value)
        record[name] = value
    return record


def encode_record(record: dict) -> bytes:
    """The compact JSON bytes of a record that passed :func:`validate_row`.

    Formatted directly rather than with ``json.dumps`` (the producer's hottest line after the Kafka
    client): a valid record holds only integers, an ISO date and a state-holiday code from a fixed
    set, none of which needs escaping. Same bytes as ``json.dumps(record, separators=(",", ":"))``.
    """
    return (
        f'{{"schema_version":{record["schema_version"]},"store":{record["store"]},"date":"{record["date"]}",'
        f'"day_of_week":{record["day_of_week"]},"sales":{record["sales"]},"customers":{record["customers"]},'
        f'"open":{record["open"]},"promo":{record["promo"]},"state_holiday":"{record["state_holiday"]}",'
        f'"school_holiday":{record["school_holiday"]}}}'
    ).encode()


class _KeyPartitions:
    """Partition of each key, computed once per key as the client's default partitioner does (murmur2).

    The default partitioner costs about a tenth of ``send``; there are only ~1,115 distinct keys.
    """

    def __init__(self, partitions: Iterable[int]) -> None:
        from kafka.partitioner.default import murmur2

        self._murmur2 = murmur2
        self._all = self.partitions = sorted(partitions)
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            partition = self._cache[key] = self._all[(self._murmur2(key) & 0x7FFFFFFF) % len(self._all)]
        return partition


_INT_FIELDS = [name for name, kind in FIELDS.items() if kind == "int" and name != "schema_version"]
#: ``encode_record`` as one format string, for whole columns at once (same bytes).
_RECORD_FORMAT = (
    '{{"schema_version":' + str(SCHEMA_VERSION) + ',"store":{},"date":"{}","day_of_week":{},"sales":{},"customers":{},'
    '"open":{},"promo":{},"state_holiday":"{}","school_holiday":{}}}'
).format
_ENCODE_ORDER = ["store", "date", "day_of_week", "sales", "customers", "open", "promo", "state_holiday", "school_holiday"]


def encode_frame(
    frame: pd.DataFrame, today: dt.date, max_future_days: int, live_day: dt.date | None = None
) -> tuple[list[bytes | None], list[str]]:
    """Records of a canonical sales frame, column-wise: ``(values, errors)``.

    ``values[i]`` is ``encode_record(to_record(row i))`` (re-dated to ``live_day`` when given), or ``None``
    for a row that :func:`validate_row` rejects; ``errors`` describes the first few of those. The rules stay
    :func:`validate_row`'s: a vectorised screen finds the rows that could break one of them, and only those
    go through :func:`validate_row` itself (a clean history skips it entirely).
    """
    import numpy as np
    import pandas as pd

    n = len(frame)
    data = frame.reset_index(drop=True)
    if live_day is not None:
        data = data.assign(date=pd.Timestamp(live_day), day_of_week=live_day.isoweekday())
    suspect = np.zeros(n, dtype=bool)
    for name in _ENCODE_ORDER:
        suspect |= data[name].isna().to_numpy()
    ints_ok = all(pd.api.types.is_integer_dtype(data[c].dtype) for c in _INT_FIELDS)
    dates_ok = pd.api.types.is_datetime64_any_dtype(data["date"].dtype)
    if not (ints_ok and dates_ok):
        suspect[:] = True  # not a canonical frame: every row through validate_row
        day_text = None
    else:
        ints = {c: data[c].to_numpy().astype(np.int64) for c in _INT_FIELDS}
        days = data["date"].to_numpy().astype("datetime64[D]")
        day_text = days.astype(str)
        for v in ints.values():
            suspect |= np.abs(v) > INT32_MAX
        suspect |= ints["store"] <= 0
        suspect |= (days < np.datetime64("2000-01-01")) | (days > np.datetime64(today + dt.timedelta(days=max_future_days)))
        suspect |= ints["day_of_week"] != ((days.astype(np.int64) + 3) % 7 + 1)  # 1970-01-01 was a Thursday (4)
        suspect |= (ints["sales"] < 0) | (ints["customers"] < 0)
        for flag in FLAG_FIELDS:
            suspect |= ~np.isin(ints[flag], (0, 1))
        suspect |= ~data["state_holiday"].astype(str).isin(STATE_HOLIDAYS).to_numpy()
    values: list[bytes | None] = [None] * n
    errors: list[str] = []
    bad = set()
    if suspect.any():
        for i in np.flatnonzero(suspect):
            row = data.iloc[int(i)].to_dict()
            try:
                record = to_record(row)
                reason = validate_row(record, today=live_day or today, max_future_days=max_future_days)
            except (TypeError, ValueError, AttributeError) as exc:  # NaN in an int column, a non-date
                record, reason = dict(row), f"not a sales row: {exc}"
            if reason is None:
                values[i] = encode_record(record)
            else:
                bad.add(int(i))
                if len(errors) < 5:
                    errors.append(f"store {record.get('store')} {record.get('date')}: {reason}")
    if day_text is not None:
        clean = np.flatnonzero(~suspect)
        columns = [day_text[clean] if c == "date" else data[c].to_numpy()[clean] for c in _ENCODE_ORDER]
        columns = [col.astype(str) if c == "state_holiday" else col for c, col in zip(_ENCODE_ORDER, columns, strict=True)]
        for pos, fields in zip(clean.tolist(), zip(*(col.tolist() for col in columns), strict=True), strict=True):
            values[pos] = _RECORD_FORMAT(*fields).encode()
    return values, errors


def _days(sales: pd.DataFrame, start: dt.date | str | None, end: dt.date | str | None) -> list[tuple[dt.date, pd.DataFrame]]:
    frame = sales
    if start is not None:
        frame = frame[frame["date"] >= str(start)]
    if end is not None:
        frame = frame[frame["date"] <= str(end)]
    frame = frame.sort_values(["date", "store"], kind="stable")
    return [(day.date(), group) for day, group in frame.groupby("date", sort=True)]


@dataclass(frozen=True)
class ProduceConfig:
    """What one ``produce`` run sends and how (``sfmlops produce`` builds one from its options).

    Attributes:
        mode: ``replay`` (a date range, fast) or ``live`` (one day per ``interval_s``, dated today).
        start: First source day (inclusive, a date or ``YYYY-MM-DD``); default the first day of the data.
        end: Last source day (inclusive); default the last day of the data.
        stores: Only these store ids (default all).
        topic: Topic override (default ``settings.kafka_topic``).
        interval_s: Live mode: seconds between days.
        max_days: Stop after this many days (live mode runs until interrupted without it).
        progress: Show a rich progress bar.
        on_day: Called after each day is handed to the producer, with (source day, rows).

    Raises:
        ValueError: an unknown mode, a date that is not ``YYYY-MM-DD``, or ``start`` after ``end``.
    """

    mode: Mode = "replay"
    start: dt.date | str | None = None
    end: dt.date | str | None = None
    stores: Iterable[int] | None = None
    topic: str | None = None
    interval_s: float = 10.0
    max_days: int | None = None
    progress: bool = True
    on_day: Callable[[dt.date, int], None] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("replay", "live"):
            raise ValueError(f"mode must be 'replay' or 'live', got {self.mode!r}")
        start, end = (dt.date.fromisoformat(v) if isinstance(v, str) else v for v in (self.start, self.end))
        if start and end and start > end:
            raise ValueError(f"start {start} is after end {end}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        if self.stores is not None:
            object.__setattr__(self, "stores", tuple(self.stores))


def produce(settings: Settings, config: ProduceConfig | None = None, *, sales: pd.DataFrame | None = None) -> dict:
    """Publish sales rows to Kafka.

    Args:
        settings: The settings (bootstrap servers, topic, partitions, retention, producer tuning).
        config: What to send and how (default: replay every day of the data, with a progress bar).
        sales: Canonical sales frame; default :func:`app.data.load_dataset`.

    Returns:
        Summary: ``mode, topic, days, first_day, last_day, sent, failed, invalid, seconds, rate`` (rows/s
        acknowledged), ``processes, partitions, errors``.
    """
    config = config or ProduceConfig()
    days = _select_days(settings, config, sales)
    name = config.topic or settings.kafka_topic
    meta = ensure_topic(settings, name)
    partition_of = _KeyPartitions(range(meta["partitions"]))
    total = sum(len(g) for _, g in days)
    processes = _process_count(settings, config.mode, meta["partitions"], total, config.on_day)
    bar = _progress_bar() if config.progress else None
    label = f"{config.mode} -> {name}"
    began = time.perf_counter()
    if processes > 1:
        counts = _send_forked(settings, name, days, partition_of, processes, bar, total, label)
    else:
        counts = _send_days(settings, config, name, days, partition_of, bar, total, label)
    seconds = time.perf_counter() - began
    summary = {
        "mode": config.mode,
        "topic": name,
        "days": len(days),
        "first_day": str(days[0][0]),
        "last_day": str(days[-1][0]),
        "sent": counts["sent"],
        "failed": counts["failed"],
        "invalid": counts["invalid"],
        "seconds": round(seconds, 3),
        "rate": round(counts["sent"] / seconds, 1) if seconds > 0 else 0.0,
        "processes": processes,
        "partitions": meta["partitions"],
        "errors": counts["errors"],
    }
    from app.monitoring.metrics import push_producer

    push_producer(settings, summary)  # sent / failed / rate to the Pushgateway (monitoring/README.md)
    return summary


def _select_days(settings: Settings, config: ProduceConfig, sales: pd.DataFrame | None) -> list[tuple[dt.date, pd.DataFrame]]:
    """The source days to send, oldest first, each with its rows (the stores, range and day limit of ``config``)."""
    if sales is None:
        from app.data import load_dataset

        sales, _ = load_dataset(settings)
    if config.stores is not None:
        sales = sales[sales["store"].isin(list(config.stores))]
    days = _days(sales, config.start, config.end)
    if config.max_days is not None:
        days = days[: config.max_days]
    if not days:
        raise ValueError(f"no rows between {config.start} and {config.end}")
    return days


def _progress_bar():  # rich.progress.Progress
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _send_forked(
    settings: Settings, topic: str, days: list[tuple[dt.date, pd.DataFrame]], partition_of: _KeyPartitions,
    processes: int, bar, total: int, label: str,  # rich Progress or None
) -> dict:
    """A replay encoded at once and sent by ``processes`` forked producers: ``{sent, failed, invalid, errors}``."""
    frame = _concat([g for _, g in days])
    today = dt.datetime.now(dt.UTC).date()
    values, errors = encode_frame(frame, today, settings.ingest_max_future_days)
    keys = [str(s).encode() for s in frame["store"].tolist()]
    sent = _produce_parallel(settings, topic, keys, values, partition_of, processes, bar, total, label)
    errors += sent["errors"][: max(0, 5 - len(errors))]
    return {"sent": sent["sent"], "failed": sent["failed"], "invalid": sum(v is None for v in values), "errors": errors}


def _send_days(
    settings: Settings, config: ProduceConfig, topic: str, days: list[tuple[dt.date, pd.DataFrame]],
    partition_of: _KeyPartitions, bar, total: int, label: str,  # rich Progress or None
) -> dict:
    """Day by day from one producer (live mode re-dates each day to today and waits ``interval_s`` between days):
    ``{sent, failed, invalid, errors}``."""
    from kafka.errors import KafkaError

    counts: dict[str, Any] = {"sent": 0, "failed": 0, "invalid": 0, "errors": []}
    errors: list[str] = counts["errors"]

    def _ok(_meta: object) -> None:
        counts["sent"] += 1

    def _err(exc: BaseException) -> None:
        counts["failed"] += 1
        if len(errors) < 5:
            errors.append(repr(exc))

    today = dt.datetime.now(dt.UTC).date()
    producer = make_producer(settings)
    if bar is not None:
        bar.start()
        task = bar.add_task(label, total=total)
    try:
        for i, (day, group) in enumerate(days):
            day_started = time.perf_counter()
            live_day = dt.datetime.now(dt.UTC).date() if config.mode == "live" else None
            values, invalid_errors = encode_frame(group, live_day or today, settings.ingest_max_future_days, live_day)
            errors.extend(invalid_errors[: max(0, 5 - len(errors))])
            for store, value in zip(group["store"].tolist(), values, strict=True):
                if value is None:
                    counts["invalid"] += 1
                    continue
                key = str(store).encode()
                try:
                    future = producer.send(topic, key=key, value=value, partition=partition_of(key))
                except KafkaError as exc:
                    _err(exc)
                    continue
                future.add_callback(_ok).add_errback(_err)
            if bar is not None:
                bar.update(task, advance=len(group))
            if config.on_day is not None:
                config.on_day(day, len(group))
            if config.mode == "live" and i < len(days) - 1:
                producer.flush()
                time.sleep(max(0.0, config.interval_s - (time.perf_counter() - day_started)))
        producer.flush()
    finally:
        producer.close(timeout=30)
        if bar is not None:
            bar.stop()
    return counts


#: Below this many rows a replay runs in one process (starting more costs more than it saves).
PARALLEL_MIN_ROWS = 20_000


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _process_count(
    settings: Settings, mode: str, partitions: int, rows: int, on_day: Callable[[dt.date, int], None] | None
) -> int:
    """Producer processes for this run: one for live mode, a per-day callback or a small replay; else
    ``producer_processes`` (0 = one per core), never more than partitions."""
    import os

    if mode != "replay" or on_day is not None or rows < PARALLEL_MIN_ROWS:
        return 1
    wanted = settings.producer_processes or len(os.sched_getaffinity(0))
    return max(1, min(wanted, partitions))


class _SendCounts(TypedDict):
    """What a forked producer reports (and :func:`_produce_parallel` sums): acknowledged, failed, first errors."""

    sent: int
    failed: int
    errors: list[str]


def _send_group(
    settings: Settings, topic: str, keys: list[bytes], values: list, partitions: list[int], group: list[int],
    handed, report,  # multiprocessing.Value and Connection
) -> None:
    """Child process: send the records of the partitions in ``group`` in order, then report the counts."""
    from kafka.errors import KafkaError

    counts: _SendCounts = {"sent": 0, "failed": 0, "errors": []}

    def _ok(_meta: object) -> None:
        counts["sent"] += 1

    def _err(exc: BaseException) -> None:
        counts["failed"] += 1
        if len(counts["errors"]) < 5:
            counts["errors"].append(repr(exc))

    mine = set(group)
    producer = make_producer(settings, client_id=f"sfmlops-producer-{min(group)}")
    step = 0
    try:
        for key, value, partition in zip(keys, values, partitions, strict=True):
            if partition not in mine or value is None:
                continue
            try:
                producer.send(topic, key=key, value=value, partition=partition).add_callback(_ok).add_errback(_err)
            except KafkaError as exc:
                _err(exc)
            step += 1
            if step == 5_000:
                with handed.get_lock():
                    handed.value += step
                step = 0
        producer.flush()
    finally:
        producer.close(timeout=30)
        with handed.get_lock():
            handed.value += step
        report.send(counts)
        report.close()


def _produce_parallel(
    settings: Settings, topic: str, keys: list[bytes], values: list, partition_of: _KeyPartitions, processes: int,
    bar, total: int, label: str,  # rich Progress or None
) -> _SendCounts:
    """Send with ``processes`` forked producers, each owning every ``processes``-th partition (so each key,
    and the order of its records, stays with one producer); the parent shows the progress."""
    import multiprocessing as mp

    partitions = [partition_of(k) for k in keys]
    ctx = mp.get_context("fork")  # the children share the encoded records instead of pickling them
    groups = [partition_of.partitions[i::processes] for i in range(processes)]
    workers = []
    for group in groups:
        handed = ctx.Value("q", 0)
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_send_group, args=(settings, topic, keys, values, partitions, group, handed, child_end),
            name=f"sfmlops-producer-{group[0]}", daemon=True,
        )
        proc.start()
        child_end.close()
        workers.append((proc, handed, parent_end, group))
    if bar is not None:
        bar.start()
        task = bar.add_task(label, total=total)
    result: _SendCounts = {"sent": 0, "failed": 0, "errors": []}
    try:
        while any(p.is_alive() for p, *_ in workers):
            if bar is not None:
                bar.update(task, completed=sum(h.value for _, h, _, _ in workers))
            for proc, *_ in workers:
                proc.join(0.2)
        if bar is not None:
            bar.update(task, completed=total)
    finally:
        if bar is not None:
            bar.stop()
    for proc, _handed, conn, group in workers:
        try:
            counts = conn.recv() if conn.poll() else None
        except EOFError:
            counts = None
        if counts is None:  # the child died before it could report: its rows count as failed
            mine = set(group)
            result["failed"] += sum(1 for p, v in zip(partitions, values, strict=True) if v is not None and p in mine)
            result["errors"].append(f"producer process for partitions {group} exited {proc.exitcode} without a report")
            continue
        result["sent"] += counts["sent"]
        result["failed"] += counts["failed"]
        result["errors"] += counts["errors"]
    return result
