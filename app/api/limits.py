"""Per-client request-rate limits of the authenticated routes (token buckets in this process).

Every authenticated request takes a token from its client's bucket; the expensive routes (on-demand
forecasts, the model registry, the chain views) also take one from a second, smaller bucket. A bucket holds
a minute's worth of requests and refills continuously, so a client may burst up to the per-minute limit and
then keeps the limit's pace. An empty bucket answers 429 with ``Retry-After``.

The buckets live in the API process: under uvicorn that is the whole API; under Lambda each warm container
keeps its own, so the effective limit is the per-minute limit times the function's concurrency (bounded by
its reserved concurrency), with API Gateway's stage throttling in front. Training submissions additionally
have their own limits, counted in Postgres (``SFMLOPS_API_MAX_CONCURRENT_JOBS``, ``..._MAX_JOBS_PER_HOUR``).
Requests with keys the process does not know (each costs a database lookup) share one more bucket.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from app.api.errors import ApiError

#: (method, route path) of the routes that cost the most upstream work per request.
HEAVY_ROUTES = frozenset(
    {
        ("POST", "/v1/forecasts"),
        ("GET", "/v1/models"),
        ("GET", "/v1/chain/forecast"),
        ("GET", "/v1/chain/backtest-errors"),
        ("POST", "/v1/accuracy/score"),  # scores every stored forecast day that has actuals
    }
)
_MAX_BUCKETS = 50_000


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimiter:
    """Token buckets per (client, class); ``per_minute`` for every route, ``heavy_per_minute`` for HEAVY_ROUTES."""

    per_minute: int
    heavy_per_minute: int
    _buckets: dict[tuple[int, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _refill(self, key: tuple[int, str], per_minute: int, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(tokens=float(per_minute), at=now)
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.at) * per_minute / 60.0)
        bucket.at = now
        return bucket

    def check(self, client_id: int, method: str, route: str | None) -> None:
        """Count one request of ``client_id`` to ``method route``.

        Raises:
            ApiError: 429 with ``Retry-After`` when the client is over a limit (the request is not counted).
        """
        heavy = (method, route) in HEAVY_ROUTES
        now = time.monotonic()
        with self._lock:
            bucket = self._refill((client_id, "all"), self.per_minute, now)
            if bucket.tokens < 1.0:
                raise _over(bucket, self.per_minute, "the API", "SFMLOPS_API_RATE_LIMIT_PER_MINUTE")
            if heavy:
                heavy_bucket = self._refill((client_id, "heavy"), self.heavy_per_minute, now)
                if heavy_bucket.tokens < 1.0:
                    raise _over(heavy_bucket, self.heavy_per_minute, f"{method} {route}", "SFMLOPS_API_HEAVY_RATE_LIMIT_PER_MINUTE")
                heavy_bucket.tokens -= 1.0
            bucket.tokens -= 1.0

    def check_lookup(self) -> None:
        """Count one database lookup of a key this process does not know (any client, valid or not).

        Guessed or random keys are not tied to a client, so they share one bucket of ``per_minute`` lookups
        per process: a flood of them gets 429 instead of costing a query each.

        Raises:
            ApiError: 429 with ``Retry-After`` when the bucket is empty.
        """
        now = time.monotonic()
        with self._lock:
            bucket = self._refill((0, "key-lookups"), self.per_minute, now)
            if bucket.tokens < 1.0:
                raise _over(
                    bucket, self.per_minute, "", "SFMLOPS_API_RATE_LIMIT_PER_MINUTE",
                    f"Too many requests with unknown API keys: at most {self.per_minute} per minute",
                )
            bucket.tokens -= 1.0


def _over(bucket: _Bucket, per_minute: int, what: str, setting: str, message: str | None = None) -> ApiError:
    """The 429 for an empty ``bucket``, with ``Retry-After``: the seconds until it holds one token again."""
    wait = (1.0 - bucket.tokens) * 60.0 / per_minute
    text = message or f"Too many requests to {what}: the limit is {per_minute} per minute per client"
    return ApiError(429, f"{text} ({setting})", headers={"Retry-After": str(max(1, math.ceil(wait)))})
