"""Streaming ingestion job: Kafka sales topic -> validation -> PostgreSQL, exactly once.

The same file runs locally (``sfmlops ingest`` calls spark-submit on it) and on EMR::

    spark-submit --py-files app.zip sales_stream.py --trigger available-now

Settings (addresses, tables, credentials) come from ``SFMLOPS_*`` environment variables; the code
is in ``app.ingest.job`` (shipped as ``app.zip`` through ``--py-files``).
"""

import sys

from app.ingest.job import main

if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
