"""The training profile: the features as encoded and the prediction, per basis, carried by every artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flight_delay.artifact import from_bundle, to_bundle
from flight_delay.features import FeatureContract
from flight_delay.model_metadata import InvalidMetadata
from flight_delay.monitoring.profile import (
    AT_DEPARTURE,
    BEFORE_DEPARTURE,
    PREDICTION,
    FeatureProfile,
    InputProfile,
    number_bin_counts,
    profile_features,
    read_profile,
)
from tests.factories import basis_matrices, synthetic_flights, tiny_model

V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"
LEGACY = {
    "version": 1,
    "rows": 10,
    "fields": {
        "dep_delay": {"kind": "number", "edges": [0.0, 10.0], "shares": [0.1, 0.2, 0.3, 0.4]},
        "carrier": {"kind": "category", "categories": ["AA", "UA"], "shares": [0.5, 0.5, 0.0]},
    },
}


def test_every_feature_and_the_prediction_are_profiled_per_basis() -> None:
    model = tiny_model(0)

    profile = read_profile(model.profile)

    assert isinstance(profile, FeatureProfile)
    assert profile.rows == 322  # the Jan-Oct flights of the 400
    assert (profile.first_flight, profile.last_flight) == ("2013-01-01", "2013-10-28")
    for basis in (AT_DEPARTURE, BEFORE_DEPARTURE):
        fields = profile.fields(basis)
        assert list(fields) == [*model.contract.feature_names, PREDICTION]
        assert "month" not in fields  # contract version 2 does not read it
        for field in fields.values():
            assert sum(field.shares) == pytest.approx(1.0)
    carrier = profile.fields()["carrier"]
    assert carrier.categories == model.contract.categories["carrier"]  # bins by code, in the contract's order
    assert carrier.shares[-1] == 0.0  # no unseen carrier in training
    assert profile.fields(BEFORE_DEPARTURE)["dep_delay"].shares[0] == 1.0  # hidden: all null
    assert profile.fields(AT_DEPARTURE)["dep_delay"].shares[0] == 0.0


def test_the_prediction_bins_are_shared_by_both_bases() -> None:
    fields = {
        basis: read_profile(tiny_model(0).profile).fields(basis)[PREDICTION]
        for basis in (AT_DEPARTURE, BEFORE_DEPARTURE)
    }

    assert fields[AT_DEPARTURE].edges == fields[BEFORE_DEPARTURE].edges
    assert fields[AT_DEPARTURE].shares != fields[BEFORE_DEPARTURE].shares


def test_number_bins_close_on_the_left() -> None:
    values = np.array([np.nan, 0.0, 9.99, 10.0, 20.0, 35.0])

    assert number_bin_counts(values, (10.0, 20.0)) == [1, 2, 1, 2]


def test_the_profile_travels_in_the_bundle() -> None:
    model = tiny_model(0)

    read = from_bundle(to_bundle(model))

    assert read.profile == model.profile
    assert read_profile(read.profile).to_dict() == model.profile
    assert "profile" in read.describe()


def test_a_bundle_without_a_profile_loads_and_is_written_as_before() -> None:
    stored = V1_BUNDLE.read_bytes()

    model = from_bundle(stored)

    assert model.profile is None
    assert "profile" not in model.describe()
    assert json.loads(to_bundle(model)) == json.loads(stored)


def test_an_older_profile_of_input_fields_still_reads() -> None:
    profile = read_profile(LEGACY)

    assert isinstance(profile, InputProfile)
    assert profile.fields["carrier"].shares == (0.5, 0.5, 0.0)
    assert profile.to_dict() == LEGACY


def changed(path: tuple[str, ...], value: object) -> dict:
    """The tiny model's profile with one entry (by its path of keys) replaced."""
    profile = json.loads(json.dumps(tiny_model(0).profile))
    place = profile
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return profile


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 3),
        (("bases",), {}),
        (("flights", "rows"), -1),
        (("flights", "first"), "yesterday"),
        (("bins", "dep_delay"), {"kind": "number", "edges": [2.0, 1.0]}),
        (("bins", "carrier"), {"kind": "category", "categories": [1]}),
        (("bins", "carrier"), {"kind": "colour"}),
        (("bases", "at_departure", "shares", "dep_delay"), [1.0]),
        (("bases", "at_departure", "shares", "carrier"), [2.0, 0, 0, 0, 0, 0]),
        (("bases", "before_departure", "rows"), "many"),
    ],
)
def test_a_malformed_profile_is_refused(path: tuple[str, ...], value: object) -> None:
    with pytest.raises(ValueError, match="profile"):
        read_profile(changed(path, value))


def test_unseen_categories_fall_in_the_last_bin() -> None:
    contract = FeatureContract.fit(synthetic_flights(200, seed=1))
    frame = synthetic_flights(100, seed=2)
    frame.loc[:24, "carrier"] = "ZZ"
    matrices = basis_matrices(contract, frame)
    profile = profile_features(
        contract.feature_names, matrices, contract.categories, lambda m: m[:, 3], (None, None)
    )

    assert profile.fields()["carrier"].shares[-1] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("path", "value", "says"),
    [
        (("bins", "carrier", "categories"), ["AA", "UA", "ZZ", "B6", "EV"], "vocabulary"),
        (("bins", "day_of_week"), {"kind": "category", "categories": ["Mon"]}, "as a category"),
    ],
)
def test_a_model_whose_profile_does_not_fit_its_contract_is_refused(
    path: tuple[str, ...], value: object, says: str
) -> None:
    model = tiny_model(0)
    profile = changed(path, value)
    if path[1] == "day_of_week":  # one bin and its unseen one, in each basis
        for basis in ("at_departure", "before_departure"):
            profile["bases"][basis]["shares"]["day_of_week"] = [1.0, 0.0]
    bundle = json.loads(to_bundle(model))

    with pytest.raises(InvalidMetadata, match=says):
        from_bundle(json.dumps({**bundle, "profile": profile}).encode())


def test_an_older_profile_of_a_field_the_model_does_not_read_is_refused() -> None:
    bundle = json.loads(to_bundle(tiny_model(0)))
    older = {**LEGACY, "fields": {**LEGACY["fields"], "tailnum": LEGACY["fields"]["carrier"]}}

    with pytest.raises(InvalidMetadata, match="tailnum"):
        from_bundle(json.dumps({**bundle, "profile": older}).encode())
