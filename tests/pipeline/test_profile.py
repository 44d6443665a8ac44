"""The Spark pipeline's training profile: the dummy trainer's bins and shares, computed in Spark."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import SparkSession

from flight_delay.features import INPUT_FIELDS
from flight_delay.monitoring.profile import TrainingProfile, number_bin_counts, profile_frame, shares_of
from flight_delay.pipeline.profile import profile_flights
from tests.factories import synthetic_flights


def test_spark_profiles_like_pandas(spark: SparkSession) -> None:
    frame = synthetic_flights(600, seed=4)
    frame.loc[::5, "dep_delay"] = np.nan

    profile = profile_flights(spark.createDataFrame(frame), INPUT_FIELDS)
    expected = profile_frame(frame, INPUT_FIELDS)

    assert TrainingProfile.from_dict(profile.to_dict()) == profile
    assert profile.rows == 600
    for name in ("carrier", "origin", "dest"):
        assert profile.fields[name] == expected.fields[name]
    for name in ("year", "month", "dep_delay", "distance", "sched_dep_time"):
        edges = profile.fields[name].edges
        values = frame[name].to_numpy(dtype=np.float64)
        assert profile.fields[name].shares == pytest.approx(shares_of(number_bin_counts(values, edges)))
        assert np.allclose(edges, expected.fields[name].edges, rtol=0.05, atol=15)
