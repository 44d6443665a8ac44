"""Reads model files into ServingModels, and turns an upload into the native form workers load.

An upload is only ever read inside the model sandbox (serving/sandbox.py), by `check_upload`: read in
any accepted format, then written in its kind's native form, which is read back, scored on the
reference flight and rendered as GET /model/ and its card would render it. The workers read only
that native form (`load_native`): the .lgbm.json bundle for the project's artifact, LightGBM's own
text model for a bare booster, and for a scikit-learn Pipeline, which has no data-only format, the
pickle the sandbox wrote of what it unpickled (read again through the same allowlist).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np

from flight_delay.artifact import LIGHTGBM_TEXT_PREFIX, from_bundle, to_bundle
from flight_delay.card import model_card
from flight_delay.compat.lightgbm_internals import LightGBMError
from flight_delay.errors import InvalidArtifact, UnusableModel
from flight_delay.features import REFERENCE_FLIGHT
from flight_delay.model_metadata import InvalidMetadata
from flight_delay.serving.adapters import BoosterModel, PipelineModel, ProjectModel, ServingModel, adapt
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


# The kinds a bare booster is shown as: the native text model keeps the kind it was uploaded as.
BOOSTER_KINDS = ("lightgbm.Booster", "lightgbm.LGBMRegressor", "lightgbm.Booster (text)")
# A pickle of a Pipeline written by the sandbox: the protocol every allowlisted class pickles in.
NATIVE_PICKLE_PROTOCOL = 4


def artifact_version(data: bytes) -> str:
    """Returns the content address of an artifact: the sha256 of its bytes."""
    return hashlib.sha256(data).hexdigest()


def refuse_foreign(data: bytes) -> None:
    """Refuses an empty upload or a container people send by mistake, from its first bytes alone."""
    if not data:
        raise InvalidArtifact("The upload is empty.")
    for magic, what in FOREIGN_FORMATS.items():
        if data.startswith(magic):
            raise InvalidArtifact(f"The upload is {what}, not a model file; send {ACCEPTED_FORMATS}.")


def read_model(data: bytes) -> ServingModel:
    """Reads any accepted format into a ServingModel (in the sandbox, or a native form in a worker)."""
    refuse_foreign(data)
    if data.lstrip()[:1] in (b"{", b"["):  # JSON; neither byte is a pickle opcode
        return ProjectModel(_parsed(from_bundle, data))
    if data.startswith(LIGHTGBM_TEXT_PREFIX):
        booster = _parsed(lambda text: lgb.Booster(model_str=text.decode()), data)
        return BoosterModel(booster, "lightgbm.Booster (text)")
    return adapt(restricted_loads(data))


def _parsed(parse: Callable[[bytes], Any], data: bytes) -> Any:
    """Runs a parser of a pickle-free format, turning its failures into a clear refusal."""
    try:
        return parse(data)
    except InvalidMetadata as exc:  # read, but what it says of itself does not fit its schema
        raise UnusableModel(f"The project artifact is inconsistent: {exc}.", exc.errors) from exc
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


def native_form(model: ServingModel) -> bytes:
    """The bytes workers load a checked model from: a bundle, a LightGBM text model, or a pickle."""
    if isinstance(model, ProjectModel):
        return to_bundle(model.model)
    if isinstance(model, BoosterModel):
        return model.booster.model_to_string(num_iteration=-1).encode()
    if isinstance(model, PipelineModel):
        return pickle.dumps(model.pipeline, protocol=NATIVE_PICKLE_PROTOCOL)
    raise UnusableModel(f"A {model.kind} model has no native form.")


def load_native(native: bytes, kind: str) -> ServingModel:
    """Reads the native form of a checked model, with the kind it was accepted as."""
    model = read_model(native)
    if isinstance(model, BoosterModel) and kind in BOOSTER_KINDS:
        model.kind = kind
    return model


def check_renders(model: ServingModel) -> None:
    """Refuses a model whose metadata GET /model/ could not answer as JSON or its card could not show."""
    described = model.describe()
    try:
        json.dumps(described, allow_nan=False)
        model_card({**described, "kind": model.kind, "version": ""})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UnusableModel(f"The model's metadata cannot be shown: {type(exc).__name__}: {exc}") from exc


def check_upload(data: bytes) -> tuple[str, bytes]:
    """Reads an upload, writes its native form and checks that form whole; returns (kind, native).

    Runs in the model sandbox only: the upload is never read anywhere else.
    """
    uploaded = read_model(data)
    native = native_form(uploaded)
    # A bundle that to_bundle wrote is its own native form: read once already.
    served = uploaded if native == data else load_native(native, uploaded.kind)
    check_reference_prediction(served)
    check_renders(served)
    return served.kind, native
