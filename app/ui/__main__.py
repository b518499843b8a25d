"""``python -m app.ui``: serve the operator UI (same as ``sfmlops ui``)."""

import sys

from app.ui import run

sys.exit(run())
