"""scikit-learn's private module paths, as named in pickles of its estimators (serving/safe_pickle.py).

What is used: the full names (`module.qualname`) under which pickle records the scikit-learn
classes a served pipeline may hold; all but Pipeline live in private modules
(`sklearn.compose._column_transformer`, `sklearn.preprocessing._encoders`, ...), and a pickle
names the module a class is defined in, not the public one that re-exports it.

Why no public API does it: the allowlisting unpickler must compare a pickle's global references
with exact names before importing anything; the public names (`sklearn.compose.ColumnTransformer`)
never appear in a pickle.

What breaks if it changes: when scikit-learn moves a class to another module, pipelines pickled with
that version are refused at upload ("references ..., which is not allowed"); older pickles still
name the old module, which no longer imports. tests/test_compat.py checks each name is where the
installed scikit-learn defines the class.
"""

from __future__ import annotations

# Holds the functions it calls at prediction time as `func` and `inverse_func` (its constructor's).
FUNCTION_TRANSFORMER = "sklearn.preprocessing._function_transformer.FunctionTransformer"
PICKLED_CLASSES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.compose._column_transformer.ColumnTransformer",
        FUNCTION_TRANSFORMER,
        "sklearn.preprocessing._encoders.OneHotEncoder",
        "sklearn.preprocessing._encoders.OrdinalEncoder",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._data.MinMaxScaler",
        "sklearn.preprocessing._data.MaxAbsScaler",
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.impute._base.SimpleImputer",
    }
)
