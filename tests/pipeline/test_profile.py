"""The Spark pipeline's training profile: the dummy trainer's bins and shares of the features, in Spark."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import SparkSession

from flight_delay.features import FeatureContract
from flight_delay.monitoring.profile import (
    AT_DEPARTURE,
    BASES,
    BEFORE_DEPARTURE,
    PREDICTION,
    code_bin_counts,
    flight_span,
    number_bin_counts,
    prediction_fields,
    profile_features,
    read_profile,
    shares_of,
)
from flight_delay.pipeline import profile as spark_profile
from tests.factories import based_frame, basis_matrices, synthetic_flights


def predict(matrix: np.ndarray) -> np.ndarray:
    """A stand-in model: any deterministic function of the features, NaN-safe."""
    return np.nan_to_num(matrix[:, 3]) * 0.5 + matrix[:, 1] / 100


def test_spark_profiles_the_features_like_numpy(spark: SparkSession) -> None:
    frame = synthetic_flights(600, seed=4)
    frame.loc[::5, "dep_delay"] = np.nan
    frame.loc[::7, "carrier"] = "ZZ"  # unseen by the contract: a null code, the last bin
    contract = FeatureContract.fit(synthetic_flights(600, seed=5))
    rng = np.random.default_rng(4)
    for name in contract.context_features:  # as pipeline/context.py adds them: some unknown
        frame[name] = np.where(rng.random(600) < 0.2, np.nan, rng.normal(10, 5, 600))
    names = contract.feature_names
    features = contract.encode(frame)
    matrices = basis_matrices(contract, frame)
    scored = prediction_fields(matrices, predict)

    profile = spark_profile.profile_features(spark.createDataFrame(based_frame(frame)), contract, scored)
    dates = flight_span(*(frame[n].to_numpy() for n in ("year", "month", "day")))
    expected = profile_features(names, matrices, contract.categories, predict, dates)

    assert read_profile(profile.to_dict()) == profile
    assert (profile.rows, profile.first_flight, profile.last_flight) == (600, *dates)
    assert {basis: profile.bases[basis][0] for basis in BASES} == {AT_DEPARTURE: 480, BEFORE_DEPARTURE: 600}
    for basis in BASES:
        fields, wanted = profile.fields(basis), expected.fields(basis)
        assert fields[PREDICTION] == wanted[PREDICTION]
        for name in ("carrier", "origin", "dest"):
            assert fields[name] == wanted[name]
        for index, name in enumerate(names):
            if name in contract.categories:
                continue
            column = (
                features[:, index] if basis == AT_DEPARTURE or name != "dep_delay" else np.full(600, np.nan)
            )
            if basis == AT_DEPARTURE:
                column = column[~np.isnan(features[:, names.index("dep_delay")])]
            shares = shares_of(number_bin_counts(column, fields[name].edges))
            assert fields[name].shares == pytest.approx(shares), (basis, name)
            assert np.allclose(fields[name].edges, wanted[name].edges, rtol=0.05, atol=15), name
    assert profile.fields(BEFORE_DEPARTURE)["dep_delay"].shares[0] == 1.0  # hidden: all in the null bin
    unseen = profile.fields(BEFORE_DEPARTURE)["carrier"].shares[-1]
    assert unseen == pytest.approx(len(frame.loc[::7]) / 600)  # every flight, the unseen carrier's included


def test_codes_count_like_numpy() -> None:
    assert code_bin_counts(np.array([0.0, 2.0, np.nan, 2.0]), ("a", "b", "c")) == [1, 0, 2, 1]
