"""The notebook runs end to end on the full data and shows the answers and an honest model."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from flight_delay.pipeline.dataset import write_dataset
from flight_delay.pipeline.notebook import execute_notebook
from flight_delay.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebook" / "flight_delay.ipynb"

pytestmark = pytest.mark.slow


def summary_of(notebook: nbformat.NotebookNode) -> dict:
    """Finds the JSON summary the last code cell prints."""
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    text = "".join(output.get("text", "") for output in last.outputs if output.output_type == "stream")
    return json.loads(text)


def assert_full_data_readings(answers: dict) -> None:
    """The full data's facts that the answers' readings exist to show."""
    # Q4: landings put ATL first, the plain count by destination puts ORD first.
    first_two = {row["airport"]: row for row in answers["q4"][:2]}
    assert [row["airport"] for row in answers["q4"][:2]] == ["ATL", "ORD"]
    assert (first_two["ATL"]["flights"], first_two["ORD"]["flights"]) == (17_215, 17_283)
    assert (first_two["ATL"]["flights_rank"], first_two["ORD"]["flights_rank"]) == (2, 1)
    # Q13: with any 2 flights allowed, LGA-MYR leads on 3; with 30, EWR-HNL on 359.
    leaders = {row["min_flights"]: row for row in answers["q13"][::3]}
    assert (leaders[2]["dest"], leaders[2]["timed_flights"]) == ("MYR", 3)
    assert (leaders[30]["origin"], leaders[30]["dest"], leaders[30]["timed_flights"]) == ("EWR", "HNL", 359)
    # Final: all five flights left the day after their scheduled date.
    for flight in answers["final"]:
        scheduled = dt.date(flight["year"], flight["month"], flight["day"])
        assert str(flight["flight_date"]) == str(scheduled + dt.timedelta(days=1))
        assert flight["note"].startswith("dep_delay of ")


def test_committed_notebook_is_executed_with_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    assert all(cell.execution_count for cell in code_cells)
    assert not [o for cell in code_cells for o in cell.outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for cell in code_cells for o in cell.outputs)
    assert_full_data_readings(summary_of(notebook)["answers"])


def test_the_runner_reports_each_code_cell(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# two cells"),
            nbformat.v4.new_code_cell("x = 1"),
            nbformat.v4.new_code_cell("x + 1"),
        ]
    )
    path = tmp_path / "tiny.ipynb"
    nbformat.write(notebook, path)
    caplog.set_level(logging.INFO, logger="flight_delay.progress")

    execute_notebook(path, progress=Progress("notebook", stream=io.StringIO()))

    lines = [r.getMessage() for r in caplog.records if r.name == "flight_delay.progress"]
    assert lines[:3] == [
        "notebook: tiny.ipynb",
        "notebook: tiny.ipynb: 1/2 cells",
        "notebook: tiny.ipynb: 2/2 cells",
    ]
    assert nbformat.read(path, as_version=4).cells[2].outputs[0]["data"]["text/plain"] == "2"


def test_notebook_runs_end_to_end_on_the_full_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_dataset(tmp_path / "airports-database.csv")
    notebook_copy = tmp_path / "notebook" / NOTEBOOK.name
    notebook_copy.parent.mkdir()
    shutil.copy(NOTEBOOK, notebook_copy)
    monkeypatch.setenv("FLIGHT_DELAY_DATA", str(data))
    monkeypatch.setenv("FLIGHT_DELAY_MODEL_OUT", str(tmp_path / "model.pkl"))
    for key in ("AIRPORTDB_API_TOKEN", "WEATHERBIT_API_KEY"):
        monkeypatch.delenv(key, raising=False)

    executed = nbformat.read(execute_notebook(notebook_copy), as_version=4)
    summary = summary_of(executed)

    answers = summary["answers"]
    assert answers["q1"] == 336_776
    assert answers["q2"] == 8_255
    assert set(answers) == {f"q{i}" for i in range(1, 18)} | {"final"}
    assert len(answers["final"]) == 5
    assert_full_data_readings(answers)
    assert summary["beats_best_baseline"] is True
    assert (tmp_path / "model.pkl").is_file()
    assert os.path.getsize(tmp_path / "model.pkl") > 10_000
