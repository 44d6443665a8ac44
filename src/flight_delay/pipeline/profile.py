"""The training profile in Spark: the bins and shares of monitoring/profile.py, computed where training runs.

The features are the contract's, built by the same Spark expressions training reads (pipeline/features.py).
Quantile edges come from `approxQuantile` over every training row; each basis' bins are then counted in one
`groupBy` over the rows unpivoted to (basis, feature, bin), so the training rows never travel to the driver.
The predictions' shares come from the driver, where the boosters are (monitoring/profile.prediction_fields).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from flight_delay.features import FeatureContract
from flight_delay.monitoring.profile import (
    AT_DEPARTURE,
    BEFORE_DEPARTURE,
    PREDICTION,
    QUANTILES,
    FeatureProfile,
    FieldProfile,
    shares_of,
)
from flight_delay.pipeline.features import with_features

# approxQuantile's relative error: edges within 0.1% of the exact rank, in one pass.
RELATIVE_ERROR = 0.001
Counts = dict[tuple[str, str], dict[str | None, int]]  # (basis, feature) -> bin key -> rows


def number_bin(name: str, edges: Sequence[float]) -> Column:
    """A number's bin as text: 0 for null, then 1 + how many edges are at or below the value."""
    value = F.col(name)
    binned = F.when(value.isNull(), F.lit(0))
    for index, edge in enumerate(edges, start=1):
        binned = binned.when(value < F.lit(edge), F.lit(index))
    return binned.otherwise(F.lit(len(edges) + 1)).cast("string")


def code_bin(name: str) -> Column:
    """An encoded category's bin key: its code as text (null: unseen in training, the last bin)."""
    return F.col(name).cast("int").cast("string")


def quantile_edges(features: DataFrame, numbers: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """The distinct approximate decile edges of each number feature (none for an all-null one)."""
    if not numbers:
        return {}
    found = features.approxQuantile(list(numbers), list(QUANTILES), RELATIVE_ERROR)
    return {
        name: tuple(sorted({float(e) for e in edges})) for name, edges in zip(numbers, found, strict=True)
    }


def bin_counts(based: DataFrame, keys: Mapping[str, Column]) -> Counts:
    """Counts rows per (basis, feature, bin key) in one groupBy over the rows unpivoted."""
    pairs = [F.struct(F.lit(name).alias("field"), key.alias("key")) for name, key in keys.items()]
    exploded = based.select("basis", F.explode(F.array(*pairs)).alias("pair"))
    counts: Counts = {}
    for row in exploded.groupBy("basis", "pair.field", "pair.key").count().collect():
        counts.setdefault((row["basis"], row["field"]), {})[row["key"]] = int(row["count"])
    return counts


def flight_span(train: DataFrame) -> tuple[str | None, str | None]:
    """The first and last date of the training flights (ISO), or none when there are none."""
    day = F.make_date("year", "month", "day")
    row = train.agg(F.min(day).alias("first"), F.max(day).alias("last")).first()
    return tuple(None if row[end] is None else row[end].isoformat() for end in ("first", "last"))  # type: ignore[return-value]


def counted_field(
    name: str, contract: FeatureContract, edges: Mapping[str, Sequence[float]], found: dict
) -> FieldProfile:
    """One feature's profile from its counted bin keys."""
    if name in contract.categories:
        categories = contract.categories[name]
        per_bin = [found.get(str(code), 0) for code in range(len(categories))]
        per_bin.append(found.get(None, 0))
        return FieldProfile(name, "category", categories=tuple(categories), shares=shares_of(per_bin))
    per_bin = [found.get(str(i), 0) for i in range(len(edges[name]) + 2)]
    return FieldProfile(name, "number", edges=tuple(edges[name]), shares=shares_of(per_bin))


def profile_features(
    based: DataFrame, contract: FeatureContract, predictions: Mapping[str, FieldProfile]
) -> FeatureProfile:
    """Profiles the training rows' features in Spark, per basis, beside the predictions' profile.

    `based` holds one row per flight and basis (a `basis` column, dep_delay null before departure,
    the context as of that basis' prediction time), as pipeline/context.with_context builds them.
    """
    features = based.transform(with_features(contract, keep=("basis",)))
    names = contract.feature_names
    edges = quantile_edges(features, [name for name in names if name not in contract.categories])
    keys = {name: number_bin(name, edges[name]) if name in edges else code_bin(name) for name in names}
    counts = bin_counts(features, keys)
    bases = {}
    for basis in (AT_DEPARTURE, BEFORE_DEPARTURE):
        fields = {name: counted_field(name, contract, edges, counts.get((basis, name), {})) for name in names}
        rows = sum(counts.get((basis, names[0]), {}).values())
        bases[basis] = (rows, {**fields, PREDICTION: predictions[basis]})
    return FeatureProfile(bases[BEFORE_DEPARTURE][0], *flight_span(based), bases)
