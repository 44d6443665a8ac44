"""The model registry: artifacts stored content-addressed, the active one named in the database.

Every worker asks the database which version is active before it scores, so a model loaded
through one worker is the model all of them serve from the next request on. Each worker keeps
the models it has read in memory, keyed by version.

On SQLite (one host, so one model store) an activation also replaces the file ACTIVE in the store,
and a worker asks the database again only when that file changed: a stat instead of a query per
request. On a server database the replicas need not share the store, so every request asks.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select

from flight_delay.errors import FlightDelayError, ModelNotLoaded
from flight_delay.history.database import Database
from flight_delay.history.models import FILENAME_LENGTH, ModelActivation, ModelVersion, utcnow
from flight_delay.observability.metrics import MODEL_LOADS, best_effort
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.loader import artifact_version, check_artifact

HOW_TO_LOAD = (
    "No model is loaded. Upload one: curl -H 'Authorization: Bearer <ML_API_ADMIN_TOKEN>' "
    "-F file=@model.lgbm.json http://HOST:PORT/model/load/ (python src/model_dummy.py --out model.pkl "
    "writes model.pkl and model.lgbm.json)."
)
MODELS_KEPT_IN_MEMORY = 2
STORED_SUFFIXES = (".pkl", ".lgbm.json", ".txt")
ACTIVE_STAMP = "ACTIVE"


@dataclass(frozen=True)
class ActiveModel:
    """The model a worker serves, with its registry record and when it was made active."""

    version: str
    model: ServingModel
    record: dict[str, Any]
    loaded_at: datetime

    def info(self) -> dict[str, Any]:
        """Returns the metadata /model/ shows."""
        described = self.model.describe()
        return {
            **self.record,
            "version": self.version,
            "kind": self.model.kind,
            "input_fields": list(self.model.input_fields),
            "nullable_fields": list(self.model.nullable_fields),
            "metrics": described.get("metrics") or None,
            "training": described.get("training") or None,
            "contract": described.get("contract"),
            "loaded_at": self.loaded_at,
        }


class ModelRegistry:
    """Stores artifacts under MODEL_STORE_DIR and records which one is active."""

    def __init__(self) -> None:
        self.store_dir: Path | None = None
        self.db: Database | None = None
        self._cache: dict[str, tuple[ServingModel, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._stamped = False
        self._stamp_path = ""  # a str: os.stat of a str costs less than building a Path per request
        self._active: tuple[tuple[int, int, int], ActiveModel] | None = None

    def init_app(self, app: Flask, db: Database) -> None:
        """Binds to the app's model store and database."""
        self.configure(Path(app.config["MODEL_STORE_DIR"]), db)

    def configure(self, store_dir: Path, db: Database) -> ModelRegistry:
        """Binds to a model store folder and a database."""
        self.store_dir = Path(store_dir)
        self.db = db
        self._cache.clear()
        self._stamped = db.engine is not None and db.engine.dialect.name == "sqlite"
        self._stamp_path = str(self.store_dir / ACTIVE_STAMP)
        self._active = None
        return self

    def artifact_path(self, version: str, suffix: str = ".pkl") -> Path:
        """Returns where an artifact of this version and format lives in the store."""
        assert self.store_dir is not None, "ModelRegistry is not configured"
        return self.store_dir / f"{version}{suffix}"

    def stored_path(self, version: str) -> Path:
        """Finds the stored artifact of a version, whichever format it was uploaded in."""
        for suffix in STORED_SUFFIXES:
            path = self.artifact_path(version, suffix)
            if path.is_file():
                return path
        return self.artifact_path(version)

    def activate_upload(self, data: bytes, filename: str | None) -> ActiveModel:
        """Checks an upload, stores it, records it as the active model and returns it."""
        try:
            checked = check_artifact(data)
        except FlightDelayError as exc:
            code = exc.code
            best_effort(lambda: MODEL_LOADS.labels("refused", code).inc())
            raise
        self._store(self.artifact_path(checked.version, checked.suffix), data)
        with self.db.transaction() as session:
            record = session.get(ModelVersion, checked.version)
            if record is None:
                record = ModelVersion(
                    version=checked.version,
                    kind=checked.model.kind,
                    filename=filename[:FILENAME_LENGTH] if filename else filename,
                    size_bytes=checked.size_bytes,
                    details=_json_safe(checked.model.describe()),
                    created_at=utcnow(),
                )
                session.add(record)
                session.flush()
            activation = ModelActivation(version=checked.version, activated_at=utcnow())
            session.add(activation)
        self._write_stamp(checked.version)
        model, record_info = self._remember(checked.version, checked.model, record)
        best_effort(lambda: MODEL_LOADS.labels("accepted", "").inc())
        return ActiveModel(checked.version, model, record_info, activation.activated_at)

    def current(self) -> ActiveModel | None:
        """The active model when known without the database (the stamp unchanged); else None."""
        return self._remembered(self._stamp() if self._stamped else None)

    def active(self) -> ActiveModel:
        """Returns the model every worker must serve now; raises ModelNotLoaded if there is none."""
        stamp = self._stamp() if self._stamped else None
        known = self._remembered(stamp)
        if known is not None:
            return known
        active = self._read_active()
        if stamp is not None:  # read before the query: a newer activation changes it again
            self._active = (stamp, active)
        return active

    def _remembered(self, stamp: tuple[int, int, int] | None) -> ActiveModel | None:
        """The model remembered for this stamp of MODEL_STORE_DIR/ACTIVE, if it is the one remembered."""
        remembered = self._active
        if stamp is not None and remembered is not None and remembered[0] == stamp:
            return remembered[1]
        return None

    def _read_active(self) -> ActiveModel:
        """Asks the database which model is active and returns it, loading it if needed."""
        with self.db.transaction() as session:
            row = session.execute(
                select(ModelActivation.version, ModelActivation.activated_at)
                .order_by(ModelActivation.id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise ModelNotLoaded(HOW_TO_LOAD)
            cached = self._cache.get(row.version)
            if cached is None:
                cached = self._load_stored(session.get(ModelVersion, row.version))
        return ActiveModel(row.version, cached[0], cached[1], row.activated_at)

    def active_version(self) -> str | None:
        """Names the active version without loading it (None when no model was ever loaded)."""
        with self.db.transaction() as session:
            return session.execute(
                select(ModelActivation.version).order_by(ModelActivation.id.desc()).limit(1)
            ).scalar()

    def bootstrap(self, default_path: Path | None) -> str | None:
        """At start: keeps the last active model, else activates the file at default_path if any."""
        current = self.active_version()
        if current is not None or default_path is None or not Path(default_path).is_file():
            return current
        return self.activate_upload(Path(default_path).read_bytes(), Path(default_path).name).version

    def _load_stored(self, record: ModelVersion) -> tuple[ServingModel, dict[str, Any]]:
        """Reads an active model from the store, checking it is the artifact that was accepted."""
        path = self.stored_path(record.version)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelNotLoaded(
                f"The active model {record.version} is not in the model store ({exc.strerror}); "
                "load a model again."
            ) from exc
        if artifact_version(data) != record.version:
            raise ModelNotLoaded(f"The stored artifact {path.name} does not match its sha256.")
        return self._remember(record.version, check_artifact(data).model, record)

    def _remember(
        self, version: str, model: ServingModel, record: ModelVersion
    ) -> tuple[ServingModel, dict[str, Any]]:
        """Caches a loaded model in this worker, evicting the oldest beyond a couple."""
        entry = (
            model,
            {
                "filename": record.filename,
                "size_bytes": record.size_bytes,
                "created_at": record.created_at,
            },
        )
        with self._lock:
            self._cache[version] = entry
            while len(self._cache) > MODELS_KEPT_IN_MEMORY:
                self._cache.pop(next(iter(self._cache)))
        return entry

    def _stamp(self) -> tuple[int, int, int] | None:
        """Identifies the ACTIVE file's current version (inode, mtime, size); None when there is none."""
        try:
            status = os.stat(self._stamp_path)
        except OSError:
            return None
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    def _write_stamp(self, version: str) -> None:
        """Replaces the ACTIVE file (new inode), telling every worker on this host to ask again."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.store_dir, prefix=".active-")
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{version}\n")
        os.replace(tmp, self.store_dir / ACTIVE_STAMP)

    def _store(self, path: Path, data: bytes) -> None:
        """Writes an artifact into the store atomically (temporary file, fsync, rename)."""
        if path.is_file() and path.read_bytes() == data:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _json_safe(value: Any) -> Any:
    """Makes metadata storable as JSON (non-finite floats become None)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
