"""Artifact bytes: kept once per sha256 in the database, cached by each replica under MODEL_STORE_DIR.

The database is the store every replica shares; the folder is a cache a replica fills on first use and
checks against the sha256 each time it reads it, so a damaged or tampered file is fetched again.
Artifacts that outgrow the database would move behind this class (e.g. fsspec URLs to an object
store, the database keeping the sha256 and the URL): docs/ARCHITECTURE.md says how.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from flight_delay.errors import ModelNotLoaded
from flight_delay.files import write_atomically
from flight_delay.history.database import insert_absent
from flight_delay.history.models import ModelArtifact, ModelVersion, utcnow
from flight_delay.serving.loader import artifact_version

log = logging.getLogger(__name__)

# Where versions accepted before artifacts lived in the database were kept: <sha256><suffix>.
LEGACY_SUFFIXES = (".pkl", ".lgbm.json", ".txt")


class ArtifactStore:
    """Saves artifacts to the database and reads them through a verified local cache."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)

    def cache_path(self, version: str) -> Path:
        """Where this replica caches the artifact of a version."""
        return self.cache_dir / version

    def save(self, session: Session, version: str, data: bytes) -> None:
        """Stores the bytes once per sha256 (a second upload of the same model writes nothing)."""
        row = {"sha256": version, "content": data, "size_bytes": len(data), "created_at": utcnow()}
        insert_absent(session, ModelArtifact, row)

    def load(self, session: Session, version: str) -> bytes:
        """Returns a version's bytes: the local copy when it matches its sha256, else the database's."""
        data = self._cached(version)
        if data is None:
            data = self._fetched(session, version)
            self.keep(version, data)
        return data

    def keep(self, version: str, data: bytes) -> None:
        """Writes the local copy atomically; a cache that cannot be written only costs a fetch later."""
        try:
            write_atomically(self.cache_path(version), data)
        except OSError as exc:
            log.warning("model cache %s not written (%s): served from memory", self.cache_dir, exc)

    def backfill(self, session: Session) -> list[str]:
        """Copies into the database the legacy local artifacts of versions it lacks the bytes of."""
        missing = session.scalars(
            select(ModelVersion.version).where(ModelVersion.version.not_in(select(ModelArtifact.sha256)))
        ).all()
        copied = []
        for version in missing:
            data = self._legacy(version)
            if data is not None:
                self.save(session, version, data)
                copied.append(version)
        return copied

    def _cached(self, version: str) -> bytes | None:
        """The cached bytes if present and intact; a copy that fails its sha256 is removed."""
        path = self.cache_path(version)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if artifact_version(data) == version:
            return data
        log.warning("cached artifact %s does not match its sha256: fetching it again", path)
        path.unlink(missing_ok=True)
        return None

    def _fetched(self, session: Session, version: str) -> bytes:
        """Reads a version's bytes from the database, refusing bytes that do not match their sha256."""
        data = session.scalar(select(ModelArtifact.content).where(ModelArtifact.sha256 == version))
        if data is None:
            data = self._legacy(version)  # accepted before artifacts were kept in the database
        if data is None:
            raise ModelNotLoaded(f"The artifact of model {version} is not stored; load a model again.")
        if artifact_version(bytes(data)) != version:
            raise ModelNotLoaded(f"The stored artifact of model {version} does not match its sha256.")
        return bytes(data)

    def _legacy(self, version: str) -> bytes | None:
        """A pre-database local artifact <sha256><suffix> that matches its sha256, if any."""
        for suffix in LEGACY_SUFFIXES:
            path = self.cache_dir / f"{version}{suffix}"
            if path.is_file() and artifact_version(data := path.read_bytes()) == version:
                return data
        return None
