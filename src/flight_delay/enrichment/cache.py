"""An on-disk JSON cache, one file per key, so each airport and airport-day is fetched once."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

SAFE = re.compile(r"[^A-Za-z0-9_.-]")
MISSING = object()


class DiskCache:
    """Stores JSON values under folder/namespace/key.json; `None` (not found) is cached too."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _path(self, namespace: str, key: str) -> Path:
        """Maps a key to its file, with characters that could escape the folder replaced."""
        return self.folder / SAFE.sub("_", namespace) / f"{SAFE.sub('_', key)}.json"

    def get(self, namespace: str, key: str) -> Any:
        """Returns the cached value, or MISSING."""
        path = self._path(namespace, key)
        if not path.is_file():
            return MISSING
        return json.loads(path.read_text())["value"]

    def put(self, namespace: str, key: str, value: Any) -> None:
        """Writes a value atomically (temporary file, then rename)."""
        path = self._path(namespace, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump({"value": value}, handle)
        os.replace(tmp, path)
