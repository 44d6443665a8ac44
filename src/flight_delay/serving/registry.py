"""The model registry: which model is active, read from the database that every replica shares.

An activation (an upload through any replica, `flight-delay load`, the start-up model) adds a row to
model_activations and the artifact's bytes to model_artifacts. Each worker remembers the active model
and asks the database again at most every MODEL_REFRESH_MS: one small query per interval instead of
one per request, and a model activated anywhere is served everywhere within that interval (plus the
time to fetch and load it once). The worker that activated a model serves it from its next request.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flight_delay.errors import FlightDelayError, ModelNotLoaded
from flight_delay.history.database import Database, insert_absent
from flight_delay.history.models import FILENAME_LENGTH, ModelActivation, ModelVersion, utcnow
from flight_delay.observability.metrics import MODEL_LOADS, best_effort
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.artifact_store import ArtifactStore
from flight_delay.serving.loader import CheckedModel, check_artifact

HOW_TO_LOAD = (
    "No model is loaded. Upload one: curl -H 'Authorization: Bearer <ML_API_ADMIN_TOKEN>' "
    "-F file=@model.lgbm.json http://HOST:PORT/model/load/ (python src/model_dummy.py --out model.pkl "
    "writes model.pkl and model.lgbm.json)."
)
MODELS_KEPT_IN_MEMORY = 2
DEFAULT_REFRESH_MS = 250


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
    """Records accepted artifacts and activations in the database; serves the newest activation."""

    def __init__(self) -> None:
        self.db: Database | None = None
        self.store: ArtifactStore | None = None
        self.refresh_s = DEFAULT_REFRESH_MS / 1000
        self._cache: dict[str, tuple[ServingModel, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        # (monotonic time until which it needs no check, the model): one tuple, replaced whole.
        self._active: tuple[float, ActiveModel] | None = None

    def configure(self, store_dir: Path, db: Database, refresh_ms: int = DEFAULT_REFRESH_MS) -> ModelRegistry:
        """Binds to a model cache folder and a database."""
        self.store = ArtifactStore(Path(store_dir))
        self.db = db
        self.refresh_s = refresh_ms / 1000
        self._cache.clear()
        self._active = None
        return self

    def activate_upload(self, data: bytes, filename: str | None) -> ActiveModel:
        """Checks an upload, stores it, records it as the active model and returns it."""
        checked = _checked(data)
        with self.db.transaction() as session:
            self.store.save(session, checked.version, data)
            record = _recorded_version(session, checked, filename)
            activation = ModelActivation(version=checked.version, activated_at=utcnow())
            session.add(activation)
        self.store.keep(checked.version, data)
        model, record_info = self._remember(checked.version, checked.model, record)
        best_effort(lambda: MODEL_LOADS.labels("accepted", "").inc())
        active = ActiveModel(checked.version, model, record_info, activation.activated_at)
        self._active = (time.monotonic() + self.refresh_s, active)
        return active

    def current(self) -> ActiveModel | None:
        """The active model when checked within MODEL_REFRESH_MS (no database query); else None."""
        remembered = self._active
        if remembered is not None and time.monotonic() < remembered[0]:
            return remembered[1]
        return None

    def active(self) -> ActiveModel:
        """Returns the model to serve now; raises ModelNotLoaded if there is none."""
        return self.current() or self._refresh()

    def _refresh(self) -> ActiveModel:
        """Asks the database which model is active, loading it if this worker has not yet."""
        checked_at = time.monotonic()
        with self.db.transaction() as session:
            row = session.execute(
                select(ModelActivation.version, ModelActivation.activated_at)
                .order_by(ModelActivation.id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise ModelNotLoaded(HOW_TO_LOAD)
            cached = self._cache.get(row.version) or self._load_stored(session, row.version)
        active = ActiveModel(row.version, cached[0], cached[1], row.activated_at)
        self._active = (checked_at + self.refresh_s, active)
        return active

    def active_version(self) -> str | None:
        """Names the active version without loading it (None when no model was ever loaded)."""
        with self.db.transaction() as session:
            return session.execute(
                select(ModelActivation.version).order_by(ModelActivation.id.desc()).limit(1)
            ).scalar()

    def bootstrap(self, default_path: Path | None) -> str | None:
        """At start: keeps the last active model, else activates the file at default_path if any.

        Run under the start-up lock (server.prepare), so N replicas starting at once activate it once.
        """
        with self.db.transaction() as session:
            self.store.backfill(session)
        current = self.active_version()
        if current is not None or default_path is None or not Path(default_path).is_file():
            return current
        return self.activate_upload(Path(default_path).read_bytes(), Path(default_path).name).version

    def _load_stored(self, session: Session, version: str) -> tuple[ServingModel, dict[str, Any]]:
        """Reads a version's artifact (local cache, else the database) and loads it."""
        record = session.get(ModelVersion, version)
        return self._remember(version, check_artifact(self.store.load(session, version)).model, record)

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


def _checked(data: bytes) -> CheckedModel:
    """Checks an upload, counting a refusal by its code."""
    try:
        return check_artifact(data)
    except FlightDelayError as exc:
        code = exc.code
        best_effort(lambda: MODEL_LOADS.labels("refused", code).inc())
        raise


def _recorded_version(session: Session, checked: CheckedModel, filename: str | None) -> ModelVersion:
    """The version's registry row, inserted unless a replica did (the first upload's name stays)."""
    insert_absent(
        session,
        ModelVersion,
        {
            "version": checked.version,
            "kind": checked.model.kind,
            "filename": filename[:FILENAME_LENGTH] if filename else filename,
            "size_bytes": checked.size_bytes,
            "details": _json_safe(checked.model.describe()),
            "created_at": utcnow(),
        },
    )
    return session.get(ModelVersion, checked.version)


def _json_safe(value: Any) -> Any:
    """Makes metadata storable as JSON (non-finite floats become None)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
