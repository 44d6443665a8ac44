"""The container's health check: healthy while GET /health/ answers 200 (status ok or no_model).

Uses only the standard library (slim images have no curl) and the port the server binds, ML_API_PORT.
"""

import json
import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ.get('ML_API_PORT') or '8000'}/health/"

try:
    with urllib.request.urlopen(URL, timeout=4) as response:  # noqa: S310 (a fixed http URL)
        status = json.load(response).get("status")
except Exception as exc:  # a refused connection, a 503 (database unavailable), a timeout
    print(f"unhealthy: GET {URL}: {exc}")
    sys.exit(1)
print(f"GET {URL}: {status}")
sys.exit(0 if status in ("ok", "no_model") else 1)
