"""The project's model artifact: a LightGBM booster with its feature contract and training record."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import lightgbm as lgb
import numpy as np

from flight_delay.features import FeatureContract, rows_with_context
from flight_delay.files import write_atomically
from flight_delay.model_metadata import check_metadata

ARTIFACT_FORMAT = "flight-delay/lightgbm"
# The pickle-free form: LightGBM's own text model with the contract and metadata as JSON.
BUNDLE_FORMAT = "flight-delay/lightgbm-text"
BUNDLE_SUFFIX = ".lgbm.json"
LIGHTGBM_TEXT_PREFIX = b"tree\n"
MAX_METADATA_NODES = 10_000
MAX_METADATA_DEPTH = 16
MAX_METADATA_STRING = 10_000


@dataclass
class FlightDelayModel:
    """What `flight-delay train` and `model_dummy.py` write and what the API serves.

    It is pickled by reference (this class lives in an importable module), so an artifact holds
    only data: the booster's text model, the contract, metrics and provenance.
    """

    booster: lgb.Booster  # at departure: flights whose dep_delay is known (every flight, without the next)
    contract: FeatureContract
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    format: str = ARTIFACT_FORMAT
    # The training profile (monitoring/profile.py): None in artifacts written before profiles existed.
    profile: dict[str, Any] | None = None
    # Before departure: flights whose dep_delay is null (None in artifacts written before the two bases).
    before_departure: lgb.Booster | None = None
    # Whether `booster` predicts arr_delay - dep_delay (added back to its predictions) or arr_delay.
    residual: bool = False
    # Contract v3: the same two bases trained with the context hidden, for flights without context
    # ({"at_departure": ..., "before_departure": ...}); `booster` and `before_departure` read it.
    without_context: dict[str, lgb.Booster] | None = None

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Names the dataset columns a flight must carry to be scored."""
        return self.contract.input_fields

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicts the arrival delay in minutes of each flight."""
        return self.predict_features(self.contract.encode_flights(flights))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Predicts from an already encoded feature matrix."""
        return self.predict_with(features, lambda booster, rows: booster.predict(rows, num_threads=1))

    def predict_with(
        self, features: np.ndarray, run: Callable[[lgb.Booster, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Predicts each row through `run(booster, rows)`, its booster chosen by dep_delay and context."""
        if self.before_departure is None:
            return run(self.booster, features)
        departure = departure_delays(self.contract, features)
        if len(features) == 1:  # one flight: its booster from two Python tests, no masks
            left, booster = self._booster_of(features[0], departure[0])
            return run(booster, features) + (departure if left and self.residual else 0.0)
        routes = self._routes(~np.isnan(departure), context_found(self.contract, features))
        if len(routes) == 1:  # one flight, or a batch all alike: no copies
            (left, booster), _ = routes[0]
            return run(booster, features) + (departure if left and self.residual else 0.0)
        predicted = np.empty(len(features), dtype=np.float64)
        for (left, booster), rows in routes:
            offset = departure[rows] if left and self.residual else 0.0
            predicted[rows] = run(booster, features[rows]) + offset
        return predicted

    def _booster_of(self, row: np.ndarray, departure: float) -> tuple[bool, lgb.Booster]:
        """One row's booster, and whether it reads dep_delay: as `_routes` would choose it."""
        left = not math.isnan(departure)
        plain = getattr(self, "without_context", None)
        columns = self.contract.context_columns
        if plain is not None and columns and all(math.isnan(v) for v in row[columns].tolist()):
            return left, plain["at_departure" if left else "before_departure"]
        return left, self.booster if left else self.before_departure

    def _routes(
        self, departed: np.ndarray, found: np.ndarray | None
    ) -> list[tuple[tuple[bool, lgb.Booster], np.ndarray]]:
        """Each booster in use, with whether it reads dep_delay, and the rows it scores."""
        at, before = self.booster, self.before_departure
        plain = getattr(self, "without_context", None)
        if plain is None or found is None:
            candidates = [((True, at), departed), ((False, before), ~departed)]
        else:
            candidates = [
                ((True, at), departed & found),
                ((False, before), ~departed & found),
                ((True, plain["at_departure"]), departed & ~found),
                ((False, plain["before_departure"]), ~departed & ~found),
            ]
        return [(route, rows) for route, rows in candidates if rows.any()]

    def describe(self) -> dict[str, Any]:
        """Returns the metadata recorded for this model (the profile only when it has one)."""
        described = {
            "format": self.format,
            "contract": self.contract.to_dict(),
            "metrics": self.metrics,
            "training": self.training,
        }
        return described if self.profile is None else {**described, "profile": self.profile}


def departure_delays(contract: FeatureContract, features: np.ndarray) -> np.ndarray:
    """Each row's dep_delay feature (NaN: not departed, so before departure; all NaN if not a feature)."""
    if "dep_delay" not in contract.feature_names:
        return np.full(len(features), np.nan)
    return features[:, contract.feature_names.index("dep_delay")]


def context_found(contract: FeatureContract, features: np.ndarray) -> np.ndarray | None:
    """Per row, whether it carries context (any context feature not NaN); None if the contract has none."""
    columns = contract.context_columns
    if not columns:
        return None
    return rows_with_context(features, columns)


def hidden_context(contract: FeatureContract, features: np.ndarray) -> np.ndarray:
    """A copy of a feature matrix with every context feature NaN: the flights as known without context."""
    hidden = features.copy()
    hidden[:, contract.context_columns] = np.nan
    return hidden


def hidden_departure(contract: FeatureContract, features: np.ndarray) -> np.ndarray:
    """A copy of a feature matrix with dep_delay null: the flights as known before departure."""
    hidden = features.copy()
    if "dep_delay" in contract.feature_names:
        hidden[:, contract.feature_names.index("dep_delay")] = np.nan
    return hidden


def plain_metadata(value: Any, where: str) -> Any:
    """Copies JSON-like metadata (str keys, lists, numbers, short strings), bounded in size and depth."""
    budget = [MAX_METADATA_NODES]

    def copy(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > MAX_METADATA_DEPTH:
            raise ValueError(f"{where} is too large or too deeply nested")
        if isinstance(item, str) and len(item) > MAX_METADATA_STRING:
            raise ValueError(f"{where} holds a string longer than {MAX_METADATA_STRING} characters")
        if item is None or isinstance(item, bool | str):
            return item
        if isinstance(item, numbers.Integral):
            return int(item)
        if isinstance(item, numbers.Real):
            return float(item)
        if isinstance(item, Mapping) and all(isinstance(k, str) for k in item):
            return {k: copy(v, depth + 1) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [copy(v, depth + 1) for v in item]
        raise ValueError(f"{where} holds a {type(item).__name__}, which is not plain data")

    return copy(value, 0)


def checked_model(model: FlightDelayModel) -> FlightDelayModel:
    """Rebuilds a model read from a file from its validated parts; raises ValueError naming the fault.

    A fault in its metadata is an InvalidMetadata (a ValueError) whose `errors` name each field.
    """
    if not isinstance(model.booster, lgb.Booster) or not isinstance(model.contract, FeatureContract):
        raise ValueError("the artifact must hold a lightgbm.Booster and a FeatureContract")
    try:
        contract = FeatureContract.from_dict(model.contract.to_dict())
    except (AttributeError, TypeError, KeyError) as exc:
        raise ValueError(f"the artifact's contract is malformed ({type(exc).__name__})") from exc
    before = getattr(model, "before_departure", None)
    plain = _checked_plain(getattr(model, "without_context", None), contract, before)
    for booster in (model.booster, before, *(plain or {}).values()):
        if booster is not None and tuple(booster.feature_name()) != contract.feature_names:
            raise ValueError(f"the boosters' features must be the contract's {list(contract.feature_names)}")
    if model.format != ARTIFACT_FORMAT:
        raise ValueError(f"the artifact format must be {ARTIFACT_FORMAT!r}")
    checked = FlightDelayModel(
        booster=model.booster,
        contract=contract,
        metrics=plain_metadata(model.metrics, "metrics") or {},
        training=plain_metadata(model.training, "training") or {},
        profile=plain_metadata(getattr(model, "profile", None), "profile"),
        before_departure=_checked_booster(before),
        residual=getattr(model, "residual", False) is True,
        without_context=plain,
    )
    # What GET /model/, its card and monitoring read, against their schemas (InvalidMetadata names it).
    check_metadata(checked.metrics, checked.training, checked.profile, contract)
    return checked


BASES = ("at_departure", "before_departure")


def _checked_plain(plain: Any, contract: FeatureContract, before: Any) -> dict[str, lgb.Booster] | None:
    """The boosters for flights without context: both bases, exactly when the contract reads context."""
    if not contract.context_features:
        if plain is not None:
            raise ValueError("boosters without context belong only to a contract that reads context")
        return None
    if before is None or not isinstance(plain, Mapping) or sorted(plain) != sorted(BASES):
        raise ValueError(
            f"a contract that reads context needs both bases with and without it ({list(BASES)})"
        )
    for booster in plain.values():
        if not isinstance(booster, lgb.Booster):
            raise ValueError("the boosters without context must be lightgbm.Booster")
    return dict(plain)


def _checked_booster(booster: Any) -> lgb.Booster | None:
    """The before-departure booster of a model read from a file: a Booster, or none."""
    if booster is not None and not isinstance(booster, lgb.Booster):
        raise ValueError("the before-departure model must be a lightgbm.Booster")
    return booster


def to_bundle(model: FlightDelayModel) -> bytes:
    """Serialises the model without pickle: the booster's text model beside the contract, as JSON.

    A model without a profile is written exactly as before profiles existed.
    """
    bundle = {
        "format": BUNDLE_FORMAT,
        "booster": model.booster.model_to_string(num_iteration=-1),
        "contract": model.contract.to_dict(),
        "metrics": model.metrics,
        "training": model.training,
    }
    if model.profile is not None:
        bundle["profile"] = model.profile
    if model.before_departure is not None:
        bundle["before_departure"] = model.before_departure.model_to_string(num_iteration=-1)
        bundle["residual"] = model.residual
    if model.without_context is not None:
        bundle["without_context"] = {
            basis: booster.model_to_string(num_iteration=-1)
            for basis, booster in model.without_context.items()
        }
    return json.dumps(bundle, sort_keys=True).encode()


def from_bundle(data: bytes) -> FlightDelayModel:
    """Reads a bundle written by `to_bundle`: parsed, never executed; raises ValueError naming the fault."""
    try:
        bundle = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the bundle is not valid JSON ({str(exc)[:100]})") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(f'the bundle must be a JSON object with "format": "{BUNDLE_FORMAT}"')
    before = bundle.get("before_departure")
    plain = bundle.get("without_context")
    if plain is not None and not isinstance(plain, dict):
        raise ValueError('"without_context" must map each basis to LightGBM\'s text model')
    return checked_model(
        FlightDelayModel(
            booster=_text_booster(bundle.get("booster"), "booster"),
            contract=FeatureContract.from_dict(bundle.get("contract")),
            metrics=bundle.get("metrics") or {},
            training=bundle.get("training") or {},
            profile=bundle.get("profile"),
            before_departure=None if before is None else _text_booster(before, "before_departure"),
            residual=bundle.get("residual", False),
            without_context=None
            if plain is None
            else {basis: _text_booster(text, f"without_context.{basis}") for basis, text in plain.items()},
        )
    )


def _text_booster(text: Any, key: str) -> lgb.Booster:
    """Builds a booster from LightGBM's text model under `key`, refusing anything else."""
    if not isinstance(text, str) or not text.encode().startswith(LIGHTGBM_TEXT_PREFIX):
        raise ValueError(f'"{key}" must be LightGBM\'s text model (Booster.model_to_string())')
    return lgb.Booster(model_str=text)


def bundle_path(pickle_path: Path) -> Path:
    """Names the pickle-free bundle written beside a .pkl artifact (model.pkl -> model.lgbm.json)."""
    return Path(pickle_path).with_suffix(BUNDLE_SUFFIX)


def save_artifact(model: FlightDelayModel, out: Path) -> Path:
    """Writes the model as a .pkl (cloudpickle) and, beside it, as a pickle-free .lgbm.json bundle."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, cloudpickle.dumps(model))
    write_atomically(bundle_path(out), to_bundle(model))
    return out
