"""The model registry: which model is active, read from the database that every replica shares.

An activation (an upload through any replica, `flight-delay load`, the start-up model) is checked in
the model sandbox (serving/sandbox.py), then adds a row to model_activations, and to model_artifacts
the uploaded bytes (the version is their sha256) and their native form (the version row names its
sha256). Each worker remembers the active model and asks the database again at most every
MODEL_REFRESH_MS: one small query per interval instead of one per request, and a model activated
anywhere is served everywhere within that interval (plus the time to fetch and load it once). The
worker that activated a model serves it from its next request.

The same refresh reads the traffic split (serving/lifecycle.py): a canary version serving a share of
the requests, a shadow version scoring every prediction after its answer. The worker keeps them, loaded,
in a `Routing` beside the active model, so a request's version is chosen from memory. Versions are
also stored without being served (candidates), activated, rolled back, and every such change audited.

A worker loads a version from its native form only, without the sandbox: those bytes were written
by the sandbox, which read them back and scored them, and the store checks them against their
sha256. A version stored before the sandbox existed has no native form: the first worker that needs
it puts its stored upload through the sandbox once and stores the native form for the others.
"""

from __future__ import annotations

import logging
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

from flight_delay.errors import FlightDelayError, ModelCheckUnavailable, ModelNotLoaded, UnknownModelVersion
from flight_delay.history.database import Database, insert_absent
from flight_delay.history.models import FILENAME_LENGTH, ModelActivation, ModelVersion, utcnow
from flight_delay.observability.metrics import MODEL_LOADS, best_effort
from flight_delay.serving import lifecycle
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.artifact_store import ArtifactStore
from flight_delay.serving.lifecycle import UPLOAD, Actor, Traffic, TrafficChange
from flight_delay.serving.loader import artifact_version, check_reference_prediction, load_native
from flight_delay.serving.sandbox import ModelSandbox, SandboxLimits

log = logging.getLogger(__name__)

HOW_TO_LOAD = (
    "No model is loaded. Upload one: curl -H 'Authorization: Bearer <ML_API_ADMIN_TOKEN>' "
    "-F file=@model.lgbm.json http://HOST:PORT/model/load/ (python src/model_dummy.py --out model.pkl "
    "writes model.pkl and model.lgbm.json)."
)
# The active model, a canary, a shadow, and one more while the split changes.
MODELS_KEPT_IN_MEMORY = 4
DEFAULT_REFRESH_MS = 250
STARTUP = Actor("startup", "DEFAULT_MODEL_PATH at start, no model ever active")


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


@dataclass(frozen=True)
class Routing:
    """Which version serves a request and which shadows it, as this worker last read the split."""

    active: ActiveModel
    canary: ActiveModel | None = None
    canary_share: int = 0  # buckets out of lifecycle.BUCKETS
    shadow: ActiveModel | None = None

    def serving(self, request_id: str, pinned: str | None = None) -> ActiveModel:
        """The canary when the request's id falls in its share (or the request names it), else the active."""
        canary = self.canary
        if canary is None:
            return self.active
        if pinned is not None:
            return canary if pinned == canary.version else self.active
        return canary if lifecycle.canary_bucket(request_id) < self.canary_share else self.active

    def shadowing(self, served: ActiveModel) -> ActiveModel | None:
        """The shadow version scoring what `served` answered, unless it is that same version."""
        shadow = self.shadow
        return None if shadow is None or shadow.version == served.version else shadow

    def versions(self) -> tuple[str, ...]:
        """The versions answering requests: the active one, and the canary if any."""
        return (self.active.version,) if self.canary is None else (self.active.version, self.canary.version)


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
        self._routing: tuple[float, Routing] | None = None  # the same, with the traffic split

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
        self.forget()
        return self

    def forget(self) -> None:
        """Drops what this worker remembers of the active model and split: its next request asks again."""
        self._active = None
        self._routing = None

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

    def activate_upload(self, data: bytes, filename: str | None, actor: Actor = STARTUP) -> ActiveModel:
        """Checks an upload, stores it and its native form, records it as the active model, returns it."""
        checked = self.check(data)
        with self.db.transaction() as session:
            record = self._stored(session, checked, data, filename, actor)
            lifecycle.activate(session, checked.version, actor)
            activated_at = lifecycle.newest_activation(session).activated_at
        self.store.keep(checked.native_version, checked.native)
        model, record_info = self._remember(checked.version, checked.model, record)
        best_effort(lambda: MODEL_LOADS.labels("accepted", "").inc())
        active = ActiveModel(checked.version, model, record_info, activated_at)
        self.forget()
        self._active = (time.monotonic() + self.refresh_s, active)
        return active

    def store_candidate(self, data: bytes, filename: str | None, actor: Actor) -> dict[str, Any]:
        """Checks an upload and stores it without serving it (a candidate, unless already known); its info."""
        checked = self.check(data)
        with self.db.transaction() as session:
            record = self._stored(session, checked, data, filename, actor)
        self.store.keep(checked.native_version, checked.native)
        model, record_info = self._remember(checked.version, checked.model, record)
        best_effort(lambda: MODEL_LOADS.labels("accepted", "").inc())
        return ActiveModel(checked.version, model, record_info, record.created_at).info()

    def _stored(
        self, session: Session, checked: CheckedModel, data: bytes, filename: str | None, actor: Actor
    ) -> ModelVersion:
        """Stores a checked upload, its native form and its version row; the upload is audited."""
        self.store.save(session, checked.version, data)  # what was uploaded: its sha256 is the version
        self.store.save(session, checked.native_version, checked.native)
        record = _recorded_version(session, checked, filename)
        lifecycle.append_event(session, UPLOAD, actor, checked.version)
        return record

    def activate(self, version: str, actor: Actor) -> Traffic:
        """Makes a stored version the active one (nothing changes if it is); the split as it is then."""
        return self._change(lambda session: lifecycle.activate(session, version, actor))

    def rollback(self, actor: Actor) -> Traffic:
        """Makes the previously active version active again (409 when there is none)."""
        return self._change(lambda session: lifecycle.rollback(session, actor))

    def set_traffic(self, change: TrafficChange, actor: Actor) -> Traffic:
        """Sets the canary and the shadow (each when given); the split as it is then."""
        return self._change(lambda session: lifecycle.set_traffic(session, change, actor))

    def _change(self, change: Any) -> Traffic:
        """Runs a lifecycle change in one transaction; this worker reads the new split on its next request."""
        with self.db.transaction() as session:
            change(session)
            traffic = lifecycle.read_traffic(session, with_previous=True)
        self.forget()
        return traffic

    def traffic(self) -> Traffic:
        """The traffic split as the database says it now, with where a rollback would go."""
        with self.db.transaction() as session:
            return lifecycle.read_traffic(session, with_previous=True)

    def versions(self) -> list[dict[str, Any]]:
        """Every version stored, newest first, with its stage and share of the traffic."""
        with self.db.transaction() as session:
            return lifecycle.versions(session)

    def audit(self) -> list[dict[str, Any]]:
        """Every change to the models served, oldest first."""
        with self.db.transaction() as session:
            return lifecycle.audit_events(session)

    def model_of(self, version: str) -> ServingModel:
        """A stored version's model, loaded (from this worker's memory, its cache, or the database)."""
        with self.db.transaction() as session:
            record = session.get(ModelVersion, version)
        if record is None:
            raise UnknownModelVersion(f"No model of version {version} was ever loaded here.")
        return (self._cached(version) or self._load_stored(record))[0]

    def current_routing(self) -> Routing | None:
        """The routing when checked within MODEL_REFRESH_MS (no database query); else None."""
        remembered = self._routing
        if remembered is not None and time.monotonic() < remembered[0]:
            return remembered[1]
        return None

    def routing(self) -> Routing:
        """The routing to serve with now, asking the database (and loading models) if it is due."""
        current = self.current_routing()
        if current is not None:
            return current
        self._refresh()
        return self._routing[1]

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
        """Asks the database which model is active and the split, loading what this worker has not yet."""
        checked_at = time.monotonic()
        with self.db.transaction() as session:
            row = session.execute(
                select(ModelActivation.version, ModelActivation.activated_at)
                .order_by(ModelActivation.id.desc())
                .limit(1)
            ).first()
            if row is None:
                raise ModelNotLoaded(HOW_TO_LOAD)
            traffic = lifecycle.read_traffic(session, active=row.version)
            records = self._records(session, (row.version, traffic.canary, traffic.shadow))
        cached = self._cached(row.version) or self._load_stored(records[row.version])
        active = ActiveModel(row.version, cached[0], cached[1], row.activated_at)
        routing = self._routed(active, traffic, records)
        self._active = (checked_at + self.refresh_s, active)
        self._routing = (checked_at + self.refresh_s, routing)
        return active

    def _records(self, session: Session, versions: tuple[str | None, ...]) -> dict[str, ModelVersion]:
        """The version rows of the models this worker has not loaded yet (to load them after the query)."""
        return {v: session.get(ModelVersion, v) for v in versions if v is not None and v not in self._cache}

    def _routed(self, active: ActiveModel, traffic: Traffic, records: dict[str, ModelVersion]) -> Routing:
        """The routing of a split: its canary and shadow loaded (one that cannot load is left out, logged)."""
        canary = self._side_model(traffic.canary, traffic, active, records)
        shadow = self._side_model(traffic.shadow, traffic, active, records)
        share = lifecycle.canary_share(traffic.percent) if canary is not None else 0
        return Routing(active, canary, share, shadow)

    def _side_model(
        self, version: str | None, traffic: Traffic, active: ActiveModel, records: dict[str, ModelVersion]
    ) -> ActiveModel | None:
        """A canary or shadow version, loaded; None when there is none, or it is the active one."""
        if version is None or version == active.version:
            return None
        try:
            cached = self._cached(version) or self._load_stored(records[version])
        except FlightDelayError as exc:  # the active model still serves: never fail every request for it
            log.error("traffic version %s cannot be loaded, left out: %s", version[:12], exc.message)
            return None
        return ActiveModel(version, cached[0], cached[1], traffic.changed_at or active.loaded_at)

    def _cached(self, version: str) -> tuple[ServingModel, dict[str, Any]] | None:
        """A model this worker loaded already, marked as the most recently used."""
        with self._lock:
            entry = self._cache.pop(version, None)
            if entry is not None:
                self._cache[version] = entry
            return entry

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
        data = Path(default_path).read_bytes()
        return self.activate_upload(data, Path(default_path).name, STARTUP).version

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
