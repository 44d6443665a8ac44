"""Reads an uploaded model file (pickle through the allowlist, or pickle-free) and proves it can serve."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from flight_delay.artifact import BUNDLE_SUFFIX, LIGHTGBM_TEXT_PREFIX, from_bundle
from flight_delay.compat.lightgbm_internals import LightGBMError
from flight_delay.errors import InvalidArtifact, UnusableModel
from flight_delay.features import REFERENCE_FLIGHT
from flight_delay.serving.adapters import BoosterModel, ProjectModel, ServingModel, adapt
from flight_delay.serving.safe_pickle import restricted_loads

# Containers and compressions people upload by mistake, named so that the refusal says what it saw.
FOREIGN_FORMATS = {
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "gzip-compressed data",
    b"\xfd7zXZ\x00": "xz-compressed data",
    b"BZh": "bzip2-compressed data",
    b"\x28\xb5\x2f\xfd": "zstd-compressed data",
    b"\x93NUMPY": "a .npy array",
    **dict.fromkeys((b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"), "zlib-compressed data (joblib?)"),
}
ACCEPTED_FORMATS = (
    "a pickled model (.pkl), a flight-delay .lgbm.json bundle, or a LightGBM text model (Booster.save_model)"
)


@dataclass(frozen=True)
class CheckedModel:
    """A model that passed every check, with the digest of the bytes it came from."""

    version: str
    model: ServingModel
    size_bytes: int
    suffix: str


def artifact_version(data: bytes) -> str:
    """Returns the content address of an artifact: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def read_model(data: bytes) -> tuple[ServingModel, str]:
    """Reads any accepted format into a ServingModel; returns it with the format's file suffix."""
    if not data:
        raise InvalidArtifact("The upload is empty.")
    for magic, what in FOREIGN_FORMATS.items():
        if data.startswith(magic):
            raise InvalidArtifact(f"The upload is {what}, not a model file; send {ACCEPTED_FORMATS}.")
    if data.lstrip()[:1] in (b"{", b"["):  # JSON; neither byte is a pickle opcode
        return ProjectModel(_parsed(from_bundle, data)), BUNDLE_SUFFIX
    if data.startswith(LIGHTGBM_TEXT_PREFIX):
        booster = _parsed(lambda text: lgb.Booster(model_str=text.decode()), data)
        return BoosterModel(booster, "lightgbm.Booster (text)"), ".txt"
    return adapt(restricted_loads(data)), ".pkl"


def _parsed(parse: Callable[[bytes], Any], data: bytes) -> Any:
    """Runs a parser of a pickle-free format, turning its failures into a clear refusal."""
    try:
        return parse(data)
    except (ValueError, UnicodeDecodeError, LightGBMError) as exc:
        raise InvalidArtifact(f"The model file is malformed: {exc}") from exc


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
    model, suffix = read_model(data)
    check_reference_prediction(model)
    return CheckedModel(version=artifact_version(data), model=model, size_bytes=len(data), suffix=suffix)
