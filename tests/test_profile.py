"""The training profile: bins and shares per input field, carried by every artifact, optional in old ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flight_delay.artifact import from_bundle, to_bundle
from flight_delay.features import INPUT_FIELDS
from flight_delay.monitoring.profile import TrainingProfile, number_bin_counts, profile_frame
from tests.factories import synthetic_flights, tiny_model

V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"


def test_every_input_field_is_profiled() -> None:
    frame = synthetic_flights(400)
    frame.loc[:99, "dep_delay"] = np.nan

    profile = profile_frame(frame, INPUT_FIELDS)

    assert profile.rows == 400
    assert set(profile.fields) == set(INPUT_FIELDS)
    dep_delay = profile.fields["dep_delay"]
    assert dep_delay.shares[0] == pytest.approx(0.25)  # the nulls' own bin
    assert len(dep_delay.shares) == len(dep_delay.edges) + 2
    assert profile.fields["year"].edges == (2013.0,)  # one value: below it (empty), at or above it
    assert profile.fields["year"].shares == (0.0, 0.0, 1.0)
    carrier = profile.fields["carrier"]
    assert carrier.categories == ("AA", "B6", "DL", "EV", "UA")
    assert carrier.shares[-1] == 0.0  # no unseen carrier in training
    for field in profile.fields.values():
        assert sum(field.shares) == pytest.approx(1.0)


def test_number_bins_close_on_the_left() -> None:
    values = np.array([np.nan, 0.0, 9.99, 10.0, 20.0, 35.0])

    assert number_bin_counts(values, (10.0, 20.0)) == [1, 2, 1, 2]


def test_the_profile_travels_in_the_bundle() -> None:
    model = tiny_model(0)

    read = from_bundle(to_bundle(model))

    assert read.profile == model.profile
    assert TrainingProfile.from_dict(read.profile).to_dict() == model.profile
    assert "profile" in read.describe()


def test_a_bundle_without_a_profile_loads_and_is_written_as_before() -> None:
    stored = V1_BUNDLE.read_bytes()

    model = from_bundle(stored)

    assert model.profile is None
    assert "profile" not in model.describe()
    assert json.loads(to_bundle(model)) == json.loads(stored)


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"fields": {}},
        {"rows": -1},
        {"fields": {"dep_delay": {"kind": "number", "edges": [2.0, 1.0], "shares": [0, 0, 0.5, 0.5]}}},
        {"fields": {"dep_delay": {"kind": "number", "edges": [1.0], "shares": [1.0]}}},
        {"fields": {"carrier": {"kind": "category", "categories": [1], "shares": [1.0, 0.0]}}},
        {"fields": {"carrier": {"kind": "colour", "shares": []}}},
    ],
)
def test_a_malformed_profile_is_refused(change: dict) -> None:
    stored = {**tiny_model(0).profile, **change}

    with pytest.raises(ValueError, match="profile"):
        TrainingProfile.from_dict(stored)


def test_category_values_not_in_training_fall_in_the_last_bin() -> None:
    frame = pd.DataFrame({"carrier": ["UA", "UA", "AA", None]})

    profile = profile_frame(frame, ["carrier"])

    assert profile.fields["carrier"].categories == ("AA", "UA")
    assert profile.fields["carrier"].shares == (0.25, 0.5, 0.25)
