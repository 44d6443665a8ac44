"""Fits the project's LightGBM model (two bases, each with and without context) and measures it.

Both trainers feed this module: the dummy (pandas, a sample of days, seconds; context computed by
the serving definitions) and the Spark pipeline (features built in Spark through the same contract
and the same definitions). Boosting stops on the validation months (September-October by default)
and the artifact keeps the trees up to the best round.
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from flight_delay.artifact import BASES, FlightDelayModel, departure_delays, hidden_context
from flight_delay.context.definitions import (
    CONTEXT_FEATURES,
    DEFAULT_LEAD_S,
    flight_facts,
    local_day,
    observation,
    scheduled_departure,
    seconds,
)
from flight_delay.context.index import ContextIndex
from flight_delay.data.nycflights import frame_records
from flight_delay.features import TARGET, FeatureContract
from flight_delay.monitoring.profile import FeatureProfile, flight_span, profile_features
from flight_delay.progress import Advance, boosting_callback
from flight_delay.training.evaluation import holdout_metrics

VALIDATION_MONTHS = (9, 10)  # boosting stops on these; the months before train, November-December test
TEST_MONTHS = (11, 12)
EARLY_STOPPING_ROUNDS = 50
Rows = dict[str, np.ndarray]  # features, label, month, day (local date ordinal)

# At departure: L2 on the residual arr_delay - dep_delay beats `arr_delay = dep_delay` on MAE and RMSE.
AT_DEPARTURE_PARAMS: dict[str, Any] = {"objective": "regression"}
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression_l1",  # before departure: MAE is what beats the median; delays' tail is heavy
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}


def library_versions() -> dict[str, str]:
    """Records the versions that produced an artifact, and the code's git commit when known."""
    versions = {"python": platform.python_version(), "lightgbm": lgb.__version__, "numpy": np.__version__}
    versions["pandas"] = pd.__version__
    for name in ("pyspark", "flight-delay"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {**versions, "git_commit": git_commit()}


def trained_at() -> str:
    """Today's date (UTC), when a model is trained: the card's model date."""
    return datetime.now(UTC).date().isoformat()


def git_commit() -> str:
    """The commit of the checkout this code runs from, or "unknown" (an installed wheel, no git)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        done = subprocess.run(  # noqa: S603 - git at its resolved path, fixed arguments
            [git, "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def fit_booster(
    train: Rows,
    valid: Rows | None,
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: Mapping[str, Any] | None = None,
    advance: Advance | None = None,
) -> lgb.Booster:
    """Trains a booster on rows laid out as the contract's feature_names, stopping on `valid` if any.

    `advance` moves a progress bar on one step a round, and by the rounds left when boosting stops early.
    lgb.train returns the booster cut at its best round (keep_training_booster off): the artifact
    uses every tree it holds.
    """
    dataset = training_set(train, contract)
    ran: list[int] = []
    callbacks = [lambda env: ran.append(env.iteration)]
    if advance:
        callbacks.append(boosting_callback(advance))
    valid_sets = []
    if valid is not None and len(valid["label"]):
        valid_sets = [lgb.Dataset(valid["features"], label=valid["label"], reference=dataset)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False))
    booster = lgb.train(
        {**DEFAULT_PARAMS, **(params or {}), "seed": seed},
        dataset,
        num_boost_round=rounds,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    if advance:
        advance(rounds - len(ran))
    return booster


def training_set(rows: Rows, contract: FeatureContract) -> lgb.Dataset:
    """LightGBM's dataset of rows laid out as the contract's features, its categories named."""
    return lgb.Dataset(
        rows["features"],
        label=rows["label"],
        feature_name=list(contract.feature_names),
        categorical_feature=list(contract.categorical_features),
        free_raw_data=True,
    )


def fit_bases(
    at_departure: Mapping[str, Rows | None],
    before_departure: Mapping[str, Rows | None],
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: Mapping[str, Any] | None = None,
    advance: Advance | None = None,
) -> FlightDelayModel:
    """Fits both bases, each with and without context (a contract without context: two boosters).

    At departure the booster learns arr_delay - dep_delay with an L2 loss (the rest of the delay,
    not the delay again); before departure it learns arr_delay with the L1 loss, dep_delay unknown.
    Each basis' rows ({"train": ..., "valid": ...}) carry its context as of its own prediction time.
    """
    fit = partial(fit_booster, contract=contract, seed=seed, rounds=rounds, advance=advance)
    rows = {
        "at_departure": {split: residual_rows(contract, part) for split, part in at_departure.items()},
        "before_departure": before_departure,
    }
    settings = {"at_departure": {**(params or {}), **AT_DEPARTURE_PARAMS}, "before_departure": params}
    read = {
        basis: fit(rows[basis]["train"], rows[basis].get("valid"), params=settings[basis]) for basis in BASES
    }
    plain = None
    if contract.context_features:
        hidden = {
            basis: [without_context(contract, rows[basis].get(s)) for s in ("train", "valid")]
            for basis in BASES
        }
        plain = {basis: fit(*hidden[basis], params=settings[basis]) for basis in BASES}
    return FlightDelayModel(
        booster=read["at_departure"],
        contract=contract,
        before_departure=read["before_departure"],
        residual=True,
        without_context=plain,
    )


def boosters_fitted(contract: FeatureContract) -> int:
    """How many boosters fit_bases trains for a contract (a progress bar's rounds are this x rounds)."""
    return 4 if contract.context_features else 2


def residual_rows(contract: FeatureContract, rows: Rows | None) -> Rows | None:
    """At-departure rows with their label made arr_delay - dep_delay."""
    if rows is None:
        return None
    return {**rows, "label": rows["label"] - departure_delays(contract, rows["features"])}


def without_context(contract: FeatureContract, rows: Rows | None) -> Rows | None:
    """Rows with every context feature hidden: the flights as a caller without context sends them."""
    if rows is None:
        return None
    return {**rows, "features": hidden_context(contract, rows["features"])}


def context_index(flights: pd.DataFrame, weather: pd.DataFrame | None = None) -> ContextIndex:
    """An index of every flight of a frame (cancelled ones too: they were scheduled) and its weather."""
    observations = [] if weather is None else [observation(r) for r in frame_records(weather)]
    return ContextIndex.of((flight_facts(r) for r in frame_records(flights)), observations)


def basis_rows(
    flights: pd.DataFrame, contract: FeatureContract, context: ContextIndex, lead_s: int = DEFAULT_LEAD_S
) -> dict[str, Rows]:
    """Each basis' rows of arrived flights, with the context as of its prediction time.

    Before departure: as of `lead_s` before the scheduled departure, dep_delay unknown. At departure
    (flights with a dep_delay): as of the departure.
    """
    records = frame_records(flights)
    scheduled = [scheduled_departure(r["year"], r["month"], r["day"], r["sched_dep_time"]) for r in records]
    before = flights.assign(
        dep_delay=np.nan, **context_columns(context, records, [s - lead_s for s in scheduled])
    )
    departed = flights["dep_delay"].notna().to_numpy()
    at_records = [r for r, left in zip(records, departed, strict=True) if left]
    at_times = [
        s + seconds(r["dep_delay"])
        for s, r in zip(scheduled, records, strict=True)
        if r["dep_delay"] is not None
    ]
    at = flights[departed].assign(**context_columns(context, at_records, at_times))
    return {"at_departure": frame_rows(at, contract), "before_departure": frame_rows(before, contract)}


def context_columns(
    context: ContextIndex, records: list[dict[str, Any]], as_ofs: list[int]
) -> dict[str, np.ndarray]:
    """The context features of each flight at its as_of, one column each (NaN: none)."""
    found = np.array(
        [context.context(r, as_of).features for r, as_of in zip(records, as_ofs, strict=True)],
        dtype=np.float64,
    ).reshape(len(records), len(CONTEXT_FEATURES))
    return {name: found[:, i] for i, name in enumerate(CONTEXT_FEATURES)}


def frame_rows(flights: pd.DataFrame, contract: FeatureContract) -> Rows:
    """A pandas frame of flights (context columns included) as the rows training and evaluation read."""
    return {
        "features": contract.encode(flights),
        "label": flights[TARGET].to_numpy(dtype=np.float64),
        "month": flights["month"].to_numpy(dtype=np.int64),
        "day": np.array(
            [local_day(*d) for d in zip(flights["year"], flights["month"], flights["day"], strict=True)]
        ),
    }


def split_validation(train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The months boosted on, and the validation months it stops on (None when either would be empty)."""
    valid = train["month"].isin(VALIDATION_MONTHS)
    if valid.all() or not valid.any():
        return train, None
    return train[~valid], train[valid]


def training_profile(
    model: FlightDelayModel, rows: Mapping[str, Mapping[str, Rows]], window: pd.DataFrame
) -> FeatureProfile:
    """The profile of what the model read over the training window: each basis' features and predictions."""
    parts = [rows[name] for name in ("train", "valid") if name in rows]
    matrices = {basis: np.concatenate([part[basis]["features"] for part in parts]) for basis in BASES}
    contract = model.contract
    dates = flight_span(*(window[name].to_numpy() for name in ("year", "month", "day")))
    return profile_features(
        contract.feature_names, matrices, contract.categories, model.predict_features, dates
    )


def train_model(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    seed: int = 0,
    rounds: int = 200,
    params: Mapping[str, Any] | None = None,
    training_info: Mapping[str, Any] | None = None,
    context: ContextIndex | None = None,
    lead_s: int = DEFAULT_LEAD_S,
) -> FlightDelayModel:
    """Fits the contract and the boosters on raw flights in `train`; reports metrics on `test`.

    `train`'s validation months stop the boosting; `context` holds the flights and weather the
    context features are read from (default: the flights given, without weather).
    """
    context = context or context_index(pd.concat([train, test]))
    train, test = train[train[TARGET].notna()], test[test[TARGET].notna()]
    fit_part, valid_part = split_validation(train)
    contract = FeatureContract.fit(fit_part)
    parts = {"train": fit_part, "valid": valid_part, "test": test}
    rows = {
        name: basis_rows(frame, contract, context, lead_s)
        for name, frame in parts.items()
        if frame is not None
    }
    model = fit_bases(
        *({"train": rows["train"][basis], "valid": rows.get("valid", {}).get(basis)} for basis in BASES),
        contract,
        seed=seed,
        rounds=rounds,
        params=params,
    )
    model.profile = training_profile(model, rows, train).to_dict()  # the whole training window
    reference = {"features": contract.encode(train), "label": train[TARGET].to_numpy(dtype=np.float64)}
    model.metrics = holdout_metrics(model, reference, rows["test"])
    model.training = training_record(parts, seed=seed, rounds=rounds, lead_s=lead_s, **(training_info or {}))
    return model


def training_record(parts: Mapping[str, pd.DataFrame | None], **facts: Any) -> dict[str, Any]:
    """What the artifact records of its training: when, the sizes of its parts, settings, libraries."""
    sizes = {name: 0 if frame is None else len(frame) for name, frame in parts.items()}
    return {
        "trained_at": trained_at(),
        "seed": facts.pop("seed"),
        "rounds": facts.pop("rounds"),
        "train_rows": sizes["train"],
        "validation_rows": sizes["valid"],
        "test_rows": sizes["test"],
        "lead_minutes": facts.pop("lead_s") // 60,
        "libraries": library_versions(),
        **facts,
    }
