"""LightGBM's internals used to predict one row through its C API (serving/single_row.py).

What is used:
- `lightgbm.basic._LIB`: the package's ctypes handle on lib_lightgbm, with the C functions
  LGBM_BoosterPredictForMatSingleRowFastInit, LGBM_BoosterPredictForMatSingleRowFast,
  LGBM_FastConfigFree and LGBM_GetLastError (c_api.h);
- `lightgbm.basic._safe_call`: turns a C function's non-zero return into LightGBMError carrying
  LGBM_GetLastError's message;
- `Booster._handle`: the C BoosterHandle of a Python Booster;
- `lightgbm.basic.LightGBMError`: the error the package raises (not exported at its top level);
- the keys of a Booster's pickled state (`Booster.__getstate__`) that hold its text model, `_handle`
  (and `handle`, which `__setstate__` also reads), so that the allowlisting unpickler can refuse a
  Booster whose state carries no model (serving/safe_pickle.py).

Why no public API does it: `Booster.predict` has no single-row mode; it sets up a predictor and
parses its parameters on every call, which for one row costs more than walking the trees. The C
API's FastInit/Fast pair prepares once, but the Python package offers no wrapper for it, nor a
public handle on the library or on a booster's C object. A pickled Booster's state is whatever
its `__getstate__` returns; the unpickler must read it before `__setstate__` runs.

What breaks if it changes: SingleRowPredictor cannot be built or called (ImportError at import,
AttributeError for a missing symbol or handle), and every served LightGBM model with it; a changed C
signature could crash the worker, which is why tests/test_compat.py calls each symbol and
tests/test_single_row.py compares its predictions with `Booster.predict`. If the state keys change,
pickled boosters are refused at upload ("holds no LightGBM model"); tests/test_compat.py pickles one.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

import lightgbm as lgb
from lightgbm.basic import _LIB, LightGBMError, _safe_call

LIB: ctypes.CDLL = _LIB
# Raises LightGBMError with the library's message when a C API call returned non-zero. Bound to the
# name itself, not wrapped: it runs on every one-row prediction.
safe_call: Callable[[int], None] = _safe_call
# The C functions called through LIB (c_api.h), for the test that checks they are all there.
C_FUNCTIONS = (
    "LGBM_BoosterPredictForMatSingleRowFastInit",
    "LGBM_BoosterPredictForMatSingleRowFast",
    "LGBM_FastConfigFree",
    "LGBM_GetLastError",
)

# Where a pickled Booster's state holds its text model (Booster.__getstate__ / __setstate__).
BOOSTER_STATE_MODEL_KEYS = ("_handle", "handle")

__all__ = ["BOOSTER_STATE_MODEL_KEYS", "C_FUNCTIONS", "LIB", "LightGBMError", "booster_handle", "safe_call"]


def booster_handle(booster: lgb.Booster) -> ctypes.c_void_p:
    """The C API's BoosterHandle of a Booster."""
    return booster._handle
