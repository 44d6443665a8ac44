"""One-row predictions through LightGBM's single-row C API, for requests that score one flight.

`Booster.predict` sets up a predictor, parses its parameters and allocates its buffers on every call:
for one row that setup, not the trees, is most of the work (bench/PROFILE.md). LightGBM's C API has a
variant for exactly this case: LGBM_BoosterPredictForMatSingleRowFastInit prepares once per booster, and each
LGBM_BoosterPredictForMatSingleRowFast then only walks the trees. It is the same prediction (the tests
compare the two on random rows); LightGBM serializes calls on one booster with its own lock.
"""

from __future__ import annotations

import ctypes
import weakref

import lightgbm as lgb
import numpy as np

# The package's own handle on the library, its error check, a booster's C handle: no public API has them.
from flight_delay.compat.lightgbm_internals import LIB, LightGBMError, booster_handle, safe_call

C_API_PREDICT_NORMAL = 0  # c_api.h: the objective's output (what Booster.predict returns by default)
C_API_DTYPE_FLOAT64 = 1
PARAMETERS = b"num_threads=1"  # one row: OpenMP threads cost more than they give


class SingleRowPredictor:
    """Predicts one encoded row at a time with a booster, as `booster.predict(row)` would."""

    def __init__(self, booster: lgb.Booster) -> None:
        if booster.num_model_per_iteration() != 1:  # several outputs per row would overrun `result`
            raise ValueError("single-row prediction is for models with one output per row")
        self.booster = booster  # the prepared state points into the booster: it must outlive it
        self.n_features = booster.num_feature()
        self._config = ctypes.c_void_p()
        safe_call(
            LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster_handle(booster),
                ctypes.c_int(C_API_PREDICT_NORMAL),
                ctypes.c_int(0),  # start_iteration
                ctypes.c_int(booster.best_iteration),  # as Booster.predict: the best, or all (0)
                ctypes.c_int(C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features),
                ctypes.c_char_p(PARAMETERS),
                ctypes.byref(self._config),
            )
        )
        weakref.finalize(self, LIB.LGBM_FastConfigFree, self._config)

    def predict(self, row: np.ndarray) -> float:
        """Returns the prediction for one row of n_features float64 features."""
        values = np.ascontiguousarray(row, dtype=np.float64).reshape(-1)
        if values.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} features, got {values.shape[0]}")
        result = ctypes.c_double()
        length = ctypes.c_int64()
        safe_call(
            LIB.LGBM_BoosterPredictForMatSingleRowFast(
                self._config,
                values.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(length),
                ctypes.byref(result),
            )
        )
        return result.value


class BoosterRunner:
    """Runs a booster on a feature matrix: one row through the one-row API when the booster has it."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        try:
            self.single_row: SingleRowPredictor | None = SingleRowPredictor(booster)
        except (ValueError, LightGBMError):  # several outputs per row: Booster.predict only
            self.single_row = None

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicts every row of the matrix (num_threads=1: online requests are small)."""
        if len(features) == 1 and self.single_row is not None:
            return np.array([self.single_row.predict(features[0])])
        return self.booster.predict(features, num_threads=1)
