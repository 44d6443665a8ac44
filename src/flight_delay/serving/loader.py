"""Reads an uploaded artifact and proves it can serve before anything is replaced."""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass

import numpy as np

from flight_delay.errors import InvalidArtifact, UnusableModel
from flight_delay.features import REFERENCE_FLIGHT
from flight_delay.serving.adapters import ServingModel, adapt

PICKLE_PROTOCOL_2_PLUS = b"\x80"


@dataclass(frozen=True)
class CheckedModel:
    """A model that passed every check, with the digest of the bytes it came from."""

    version: str
    model: ServingModel
    size_bytes: int


def artifact_version(data: bytes) -> str:
    """Returns the content address of an artifact: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def unpickle(data: bytes) -> object:
    """Unpickles an artifact, turning every failure into a clear refusal.

    This trusts the uploader: unpickling can run code. The upload endpoint is therefore to be
    exposed only to operators until the allowlisting unpickler (hardening issue) replaces this.
    """
    if not data:
        raise InvalidArtifact("The upload is empty.")
    if not data.startswith(PICKLE_PROTOCOL_2_PLUS):
        raise InvalidArtifact("The upload is not a pickle (protocol 2 or later) file.")
    try:
        return pickle.load(io.BytesIO(data))
    except Exception as exc:  # truncated files, missing classes, anything the bytes trigger
        raise InvalidArtifact(f"The upload could not be unpickled: {type(exc).__name__}: {exc}") from exc


def check_reference_prediction(model: ServingModel) -> None:
    """Scores the reference flight and refuses a model that raises or returns non-finite numbers."""
    try:
        predicted = np.asarray(model.predict([REFERENCE_FLIGHT]), dtype=np.float64)
    except Exception as exc:  # the model's own code failed on a real flight
        raise UnusableModel(f"The model failed on the reference flight: {type(exc).__name__}: {exc}") from exc
    if predicted.shape != (1,) or not np.all(np.isfinite(predicted)):
        raise UnusableModel(
            f"The model must return one finite number per flight; it returned {predicted!r:.200}."
        )


def check_artifact(data: bytes) -> CheckedModel:
    """Unpickles, adapts and test-scores an artifact; raises InvalidArtifact or UnusableModel."""
    model = adapt(unpickle(data))
    check_reference_prediction(model)
    return CheckedModel(version=artifact_version(data), model=model, size_bytes=len(data))
