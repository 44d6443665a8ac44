"""The container's health checks, with the standard library only (slim images have no curl).

    python /app/docker/healthcheck.py [ready]   GET /health/ready: 200 when this replica can serve a
                                                prediction now (the active model loaded and scoring, the
                                                database writable): the image's HEALTHCHECK, compose's
    python /app/docker/healthcheck.py live      GET /health/live: 200 while the process answers

Exits 0 on a 200, else 1, printing why (a 503's message, e.g. no model yet): `docker inspect` shows it.
Calls the port the server binds, ML_API_PORT.
"""

import json
import os
import sys
import urllib.error
import urllib.request

PATHS = {"ready": "/health/ready", "live": "/health/live"}


def main(argv: list[str]) -> int:
    """Checks the endpoint named by argv[1] (ready by default); returns the exit status."""
    kind = argv[1] if len(argv) > 1 else "ready"
    if kind not in PATHS:
        print(f"usage: healthcheck.py [{'|'.join(PATHS)}]")
        return 2
    url = f"http://127.0.0.1:{os.environ.get('ML_API_PORT') or '8000'}{PATHS[kind]}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            print(f"GET {url}: {response.status}")
            return 0
    except urllib.error.HTTPError as exc:  # 503 not_ready: the answer says why
        try:
            reason = json.load(exc).get("message") or ""
        except (ValueError, AttributeError, OSError):
            reason = ""
        print(f"{kind}: no: GET {url}: {exc.code} {reason}".rstrip())
    except Exception as exc:  # a refused connection, a timeout
        print(f"{kind}: no: GET {url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
