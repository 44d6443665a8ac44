"""LightGBM's one-row C API predicts exactly what Booster.predict does, for every kind of booster served."""

from __future__ import annotations

import threading

import lightgbm as lgb
import numpy as np
import pytest

from flight_delay.context.definitions import CONTEXT_FEATURES
from flight_delay.serving.adapters import BoosterModel, ProjectModel
from flight_delay.serving.single_row import SingleRowPredictor
from tests.factories import minimal_flight, synthetic_flights, tiny_model, tiny_regressor


def random_rows(n_features: int, count: int, seed: int) -> np.ndarray:
    """Rows of features over wide ranges, a tenth of them NaN (missing), some far outside training."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(0, 500, size=(count, n_features))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    rows[rng.random(rows.shape) < 0.05] = 1e12
    return rows


def assert_same_as_booster(booster: lgb.Booster, rows: np.ndarray) -> None:
    """Each row's one-row prediction equals booster.predict's for it, bit for bit."""
    predictor = SingleRowPredictor(booster)
    one_by_one = np.array([predictor.predict(row) for row in rows])
    np.testing.assert_array_equal(one_by_one, booster.predict(rows, num_threads=1))


def test_the_project_booster_predicts_the_same_row_by_row() -> None:
    booster = tiny_model(seed=2).booster
    assert_same_as_booster(booster, random_rows(booster.num_feature(), 500, seed=1))


def test_a_booster_with_a_best_iteration_stops_where_booster_predict_stops() -> None:
    """Early stopping sets best_iteration, which Booster.predict uses by default: so must this."""
    frame = synthetic_flights(400, seed=4)
    features = frame[["dep_delay", "distance", "month"]].astype(float)
    train = lgb.Dataset(features[:300], frame["arr_delay"][:300])
    valid = lgb.Dataset(features[300:], frame["arr_delay"][300:], reference=train)
    booster = lgb.train(
        {"num_leaves": 7, "min_data_in_leaf": 5, "learning_rate": 0.5, "verbose": -1},
        train,
        num_boost_round=200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,  # keeps the trees past the best iteration
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    assert_same_as_booster(booster, random_rows(3, 300, seed=5))


def test_threads_sharing_one_predictor_each_get_their_own_row() -> None:
    booster = tiny_model(seed=3).booster
    predictor = SingleRowPredictor(booster)
    rows = random_rows(booster.num_feature(), 200, seed=6)
    expected = booster.predict(rows, num_threads=1)
    mismatches: list[int] = []

    def score(offset: int) -> None:
        for _ in range(5):
            for i in range(offset, len(rows), 4):
                if predictor.predict(rows[i]) != expected[i]:
                    mismatches.append(i)

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []


def test_a_row_of_the_wrong_width_is_refused() -> None:
    predictor = SingleRowPredictor(tiny_model().booster)
    with pytest.raises(ValueError, match="features"):
        predictor.predict(np.zeros(predictor.n_features + 1))


def test_a_model_with_several_outputs_per_row_keeps_booster_predict() -> None:
    """A multiclass booster has no one-row path (its output is several numbers); it still serves."""
    frame = synthetic_flights(300, seed=7)
    classes = (frame["arr_delay"] > 0).astype(int) + (frame["arr_delay"] > 30).astype(int)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "num_leaves": 7, "min_data_in_leaf": 5, "verbose": -1},
        lgb.Dataset(frame[["dep_delay", "distance"]].astype(float), classes),
        num_boost_round=5,
    )
    with pytest.raises(ValueError, match="one output"):
        SingleRowPredictor(booster)


def test_served_models_use_it_for_one_flight_and_agree_with_batches() -> None:
    """One flight through the adapters (one-row API) equals the same flight inside a batch."""
    flights = [minimal_flight(dep_delay=float(d), distance=float(300 + 40 * d)) for d in range(-5, 40, 3)]
    flights += [
        minimal_flight(dep_delay=None, distance=float(300 + 40 * d)) for d in range(5)
    ]  # before departure
    context = {name: float(i % 7) for i, name in enumerate(CONTEXT_FEATURES)}
    flights += [{**flight, **context} for flight in flights[::4]]  # with context: the other two boosters
    regressor = tiny_regressor(["dep_delay", "distance", "month"])
    project = ProjectModel(tiny_model(seed=1))
    assert len(project.runners) == 4  # one per basis, with and without context
    assert all(runner.single_row is not None for runner in project.runners.values())
    booster = BoosterModel(regressor.booster_, "lightgbm.Booster")
    assert booster.runner.single_row is not None
    for model in (project, booster):
        batch = model.predict(flights)
        one_by_one = np.concatenate([model.predict([flight]) for flight in flights])
        np.testing.assert_array_equal(one_by_one, batch)
