"""Ray job: the API's test job (``kind=noop``, accepted only with ``SFMLOPS_API_TEST_JOBS``).

It prints a line, sleeps ``--seconds`` and prints one JSON line last (the job's result), like the training jobs
but without touching any data::

    python -m app.jobs.noop --seconds 3
"""

from __future__ import annotations

import argparse
import json
import time

#: The line the job prints first (tests find it in the job's log).
BANNER = "sfmlops noop job"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The API's test job: sleep, then print one JSON line")
    parser.add_argument("--seconds", type=int, default=0, help="Seconds to sleep (>= 0)")
    args = parser.parse_args(argv)
    if args.seconds < 0:
        parser.error(f"--seconds must be >= 0, got {args.seconds}")
    print(BANNER, flush=True)
    time.sleep(args.seconds)
    print(json.dumps({"ok": True, "seconds": args.seconds}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
