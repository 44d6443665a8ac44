"""The tokens of each role the access tests configure, and the routes they call with them.

Shared by tests/test_access.py (in process) and tests/test_access_server.py (a real gunicorn).
"""

from __future__ import annotations

from typing import Any

from tests.factories import ADMIN_HEADERS, ADMIN_TOKEN

# Test fixtures, not secrets: each at least 16 characters, as outside development they must be.
READER_TOKEN = "reader-token-0123456789"  # noqa: S105
PREDICT_TOKEN = "predict-token-0123456789"  # noqa: S105
READER_HEADERS = {"Authorization": f"Bearer {READER_TOKEN}"}
PREDICT_HEADERS = {"Authorization": f"Bearer {PREDICT_TOKEN}"}
TOKENS = (ADMIN_TOKEN, READER_TOKEN, PREDICT_TOKEN)
# A dashboard's reader token and a pricing service's predict token; reading as production has it.
ROLES = {
    "ML_API_READER_TOKENS": f"dash:{READER_TOKEN}",
    "ML_API_PREDICT_TOKENS": f"pricing:{PREDICT_TOKEN}",
    "ML_API_PUBLIC_READ": False,
}
# What the page reads, and the other records: a reader's (or an admin's).
READS = (
    "/model/",
    "/model/card",
    "/model/history/",
    "/model/monitoring/",
    "/model/versions/",
    "/model/traffic",
    "/model/replays/",
    "/model/audit/",
)
VERSION = "0" * 64
# Every change: an admin's only. The bodies are valid enough that only the token stands in the way.
CHANGES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/model/load/", None),
    ("POST", "/model/actuals/", {"actuals": [{"history_id": 1, "arr_delay": 1.0}]}),
    ("POST", "/flights/", {"flights": []}),
    ("POST", "/weather/", {"observations": []}),
    ("PUT", "/model/traffic", {"shadow": None}),
    ("POST", f"/model/versions/{VERSION}/activate", {}),
    ("POST", "/model/rollback", {}),
    ("POST", f"/model/versions/{VERSION}/replay", {}),
)
AS = {"none": {}, "wrong": {"Authorization": "Bearer not-a-token-of-this-server"}}
AS |= {"predict": PREDICT_HEADERS, "reader": READER_HEADERS, "admin": ADMIN_HEADERS}
