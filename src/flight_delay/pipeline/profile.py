"""The training profile in Spark: the bins and shares of monitoring/profile.py, computed where training runs.

Quantile edges come from `approxQuantile`; every field's bins are then counted in one `groupBy` over
the flights unpivoted to (field, bin) pairs, so the training rows never travel to the driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from flight_delay.monitoring.profile import (
    QUANTILES,
    FieldProfile,
    TrainingProfile,
    field_kind,
    shares_of,
)

# approxQuantile's relative error: edges within 0.1% of the exact rank, in one pass.
RELATIVE_ERROR = 0.001


def number_bin(name: str, edges: Sequence[float]) -> Column:
    """A number's bin as text: 0 for null, then 1 + how many edges are at or below the value."""
    value = F.col(name).cast("double")
    binned = F.when(value.isNull(), F.lit(0))
    for index, edge in enumerate(edges, start=1):
        binned = binned.when(value < F.lit(edge), F.lit(index))
    return binned.otherwise(F.lit(len(edges) + 1)).cast("string")


def quantile_edges(train: DataFrame, numbers: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """The distinct approximate decile edges of each number field (none for an all-null field)."""
    if not numbers:
        return {}
    columns = [F.col(name).cast("double").alias(name) for name in numbers]
    found = train.select(*columns).approxQuantile(list(numbers), list(QUANTILES), RELATIVE_ERROR)
    return {
        name: tuple(sorted({float(e) for e in edges})) for name, edges in zip(numbers, found, strict=True)
    }


def bin_counts(
    train: DataFrame, fields: Sequence[str], edges: Mapping[str, Sequence[float]]
) -> dict[str, dict[str | None, int]]:
    """Counts rows per (field, bin key) in one groupBy: a number's bin index, a category's own value."""
    pairs = [
        F.struct(
            F.lit(name).alias("field"),
            (number_bin(name, edges[name]) if name in edges else F.col(name).cast("string")).alias("key"),
        )
        for name in fields
    ]
    exploded = train.select(F.explode(F.array(*pairs)).alias("pair")).select("pair.field", "pair.key")
    counts: dict[str, dict[str | None, int]] = {name: {} for name in fields}
    for row in exploded.groupBy("field", "key").count().collect():
        counts[row["field"]][row["key"]] = int(row["count"])
    return counts


def profile_flights(train: DataFrame, input_fields: Sequence[str]) -> TrainingProfile:
    """Profiles the training flights in Spark, in the artifact's format."""
    edges = quantile_edges(train, [name for name in input_fields if field_kind(name) == "number"])
    counts = bin_counts(train, input_fields, edges)
    fields = {}
    for name in input_fields:
        found = counts[name]
        if name in edges:
            per_bin = [found.get(str(i), 0) for i in range(len(edges[name]) + 2)]
            fields[name] = FieldProfile(name, "number", edges=edges[name], shares=shares_of(per_bin))
        else:
            categories = tuple(sorted(key for key in found if key is not None))
            per_bin = [found[c] for c in categories]
            per_bin.append(sum(found.values()) - sum(per_bin))  # nulls: the unseen bin
            fields[name] = FieldProfile(name, "category", categories=categories, shares=shares_of(per_bin))
    return TrainingProfile(rows=sum(counts[input_fields[0]].values()) if input_fields else 0, fields=fields)
