"""The project's model artifact: a LightGBM booster with its feature contract and training record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import lightgbm as lgb
import numpy as np

from flight_delay.features import FeatureContract

ARTIFACT_FORMAT = "flight-delay/lightgbm"


@dataclass
class FlightDelayModel:
    """What `flight-delay train` and `model_dummy.py` write and what the API serves.

    It is pickled by reference (this class lives in an importable module), so an artifact holds
    only data: the booster's text model, the contract, metrics and provenance.
    """

    booster: lgb.Booster
    contract: FeatureContract
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format: str = ARTIFACT_FORMAT

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Names the dataset columns a flight must carry to be scored."""
        return self.contract.input_fields

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicts the arrival delay in minutes of each flight."""
        return self.predict_features(self.contract.encode_flights(flights))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Predicts from an already encoded feature matrix."""
        return self.booster.predict(features, num_threads=1)

    def describe(self) -> dict[str, Any]:
        """Returns the metadata a client sees for this model."""
        return {
            "format": self.format,
            "contract": self.contract.to_dict(),
            "metrics": self.metrics,
            "training": self.training,
        }


def save_artifact(model: FlightDelayModel, out: Path) -> Path:
    """Writes the model as a cloudpickle artifact (atomically), creating the folder if needed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(cloudpickle.dumps(model))
    tmp.replace(out)
    return out
