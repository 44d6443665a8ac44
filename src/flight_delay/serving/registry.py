"""The model registry: which model is active, read from the database that every replica shares.

An activation (an upload through any replica, `flight-delay load`, the start-up model) is checked in
the model sandbox (serving/sandbox.py), then adds a row to model_activations, and to model_artifacts
the uploaded bytes (the version is their sha256) and their native form (the version row names its
sha256). Each worker remembers the active model and asks the database again at most every
MODEL_REFRESH_MS: one small query per interval instead of one per request, and a model activated
anywhere is served everywhere within that interval (plus the time to fetch and load it once). The
worker that activated a model serves it from its next request.

A worker loads a version from its native form only, without the sandbox: those bytes were written
by the sandbox, which read them back and scored them, and the store checks them against their
sha256. A version stored before the sandbox existed has no native form: the first worker that needs
it puts its stored upload through the sandbox once and stores the native form for the others.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from flight_delay.errors import FlightDelayError, ModelCheckUnavailable, ModelNotLoaded
from flight_delay.history.database import Database, insert_absent
from flight_delay.history.models import FILENAME_LENGTH, ModelActivation, ModelVersion, utcnow
from flight_delay.observability.metrics import MODEL_LOADS, best_effort
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.artifact_store import ArtifactStore
from flight_delay.serving.loader import artifact_version, check_reference_prediction, load_native
from flight_delay.serving.sandbox import ModelSandbox, SandboxLimits

HOW_TO_LOAD = (
    "No model is loaded. Upload one: curl -H 'Authorization: Bearer <ML_API_ADMIN_TOKEN>' "
    "-F file=@model.lgbm.json http://HOST:PORT/model/load/ (python src/model_dummy.py --out model.pkl "
    "writes model.pkl and model.lgbm.json)."
)
MODELS_KEPT_IN_MEMORY = 2
DEFAULT_REFRESH_MS = 250


@dataclass(frozen=True)
class CheckedModel:
    """An upload the sandbox accepted: its version, its native form, and that form loaded here."""

    version: str
    size_bytes: int
    native: bytes
    model: ServingModel

    @property
    def native_version(self) -> str:
        """The sha256 of the native form, under which the store keeps it."""
        return artifact_version(self.native)


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
        self.sandbox = ModelSandbox()
        self._cache: dict[str, tuple[ServingModel, dict[str, Any]]] = {}
        # Stored versions the sandbox refused (stored before it existed): not checked again here.
        self._refused: dict[str, ModelNotLoaded] = {}
        self._lock = threading.Lock()
        # (monotonic time until which it needs no check, the model): one tuple, replaced whole.
        self._active: tuple[float, ActiveModel] | None = None

    def configure(
        self,
        store_dir: Path,
        db: Database,
        refresh_ms: int = DEFAULT_REFRESH_MS,
        sandbox: ModelSandbox | None = None,
    ) -> ModelRegistry:
        """Binds to a model cache folder and a database (and a sandbox: default, this process's own)."""
        self.store = ArtifactStore(Path(store_dir))
        self.db = db
        self.refresh_s = refresh_ms / 1000
        self.sandbox = sandbox or ModelSandbox()
        self._cache.clear()
        self._refused.clear()
        self._active = None
        return self

    def check(self, data: bytes) -> CheckedModel:
        """Checks an upload in the sandbox and loads the native form it wrote; counts a refusal."""
        try:
            sandboxed = self.sandbox.check(data)
            model = load_native(sandboxed.native, sandboxed.kind)
            check_reference_prediction(model)
        except FlightDelayError as exc:
            code = exc.code
            best_effort(lambda: MODEL_LOADS.labels("refused", code).inc())
            raise
        return CheckedModel(artifact_version(data), len(data), sandboxed.native, model)

    def activate_upload(self, data: bytes, filename: str | None) -> ActiveModel:
        """Checks an upload, stores it and its native form, records it as the active model, returns it."""
        checked = self.check(data)
        with self.db.transaction() as session:
            self.store.save(session, checked.version, data)  # what was uploaded: its sha256 is the version
            self.store.save(session, checked.native_version, checked.native)
            record = _recorded_version(session, checked, filename)
            activation = ModelActivation(version=checked.version, activated_at=utcnow())
            session.add(activation)
        self.store.keep(checked.native_version, checked.native)
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
            record = None if row.version in self._cache else session.get(ModelVersion, row.version)
        cached = self._cache.get(row.version) or self._load_stored(record)
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

    def _load_stored(self, record: ModelVersion) -> tuple[ServingModel, dict[str, Any]]:
        """Loads a version from its native form (local cache, else the database), checked on one flight."""
        if record.version in self._refused:
            raise self._refused[record.version]
        native_version = record.native_sha256 or self._gate_stored(record.version)
        with self.db.transaction() as session:
            native = self.store.load(session, native_version)
        model = load_native(native, record.kind)
        check_reference_prediction(model)
        return self._remember(record.version, model, record)

    def _gate_stored(self, version: str) -> str:
        """Puts a version stored before the sandbox through it once; stores its native form for all."""
        with self.db.transaction() as session:
            data = self.store.load(session, version)
        try:
            checked = self.check(data)
        except ModelCheckUnavailable:
            raise  # the sandbox is restarting: checked again on a later request
        except FlightDelayError as exc:
            refused = ModelNotLoaded(
                f"The active model {version[:12]} does not pass the model check: {exc.message}"
            )
            self._refused[version] = refused
            raise refused from exc
        with self.db.transaction() as session:
            self.store.save(session, checked.native_version, checked.native)
            unset = (ModelVersion.version == version) & ModelVersion.native_sha256.is_(None)
            session.execute(update(ModelVersion).where(unset).values(native_sha256=checked.native_version))
        self.store.keep(checked.native_version, checked.native)
        return checked.native_version

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


def sandbox_of(config: Mapping[str, Any]) -> ModelSandbox:
    """The model sandbox a configuration names: the server's (MODEL_SANDBOX_SOCKET), else this process's."""
    return ModelSandbox(SandboxLimits.from_config(config), config.get("MODEL_SANDBOX_SOCKET"))


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
            "native_sha256": checked.native_version,
            "created_at": utcnow(),
        },
    )
    # A version stored before the sandbox, uploaded again: it has a native form now.
    unset = (ModelVersion.version == checked.version) & ModelVersion.native_sha256.is_(None)
    session.execute(update(ModelVersion).where(unset).values(native_sha256=checked.native_version))
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
