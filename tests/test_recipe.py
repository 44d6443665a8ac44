"""CONTRIBUTING.md's recipe "add an optional input field", followed on a copy of src/ (#13).

The copy gets exactly the lines the recipe shows; a fresh interpreter then imports it (so the schema
and its fast path are built from the grown registry as at start-up) and serves an old model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import flight_delay

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"
# The recipe's two lines, as CONTRIBUTING.md shows them (the test checks it still does).
FIELD_LINE = '    FlightField("gate", "str", nullable=True, in_dataset=False, default=None),'
CHECK_LINE = '    "gate": FieldRule(pattern=r"^[A-Z][0-9]{1,3}$", message="Must be a gate such as C12."),'

# Runs in the copy: builds the app, loads the old model, sends flights with and without the field.
SCRIPT = """
import io, json, sys, tempfile
from pathlib import Path
import flight_delay
from flight_delay.api import create_app
from flight_delay.validation.compiled import accepted_values
from flight_delay.features import DATASET_COLUMNS, REFERENCE_FLIGHT
from flight_delay.history.migrate import upgrade

data = Path(tempfile.mkdtemp())
url = f"sqlite:///{data / 'db.sqlite'}"
upgrade(url)
app = create_app({"ENV": "testing", "DATA_DIR": data, "DATABASE_URL": url, "MODEL_STORE_DIR": data / "m",
                  "DEFAULT_MODEL_PATH": data / "absent.pkl", "ML_API_ADMIN_TOKEN": "t" * 16})
client = app.test_client()
bundle = io.BytesIO(Path(sys.argv[1]).read_bytes())
admin = {"Authorization": "Bearer " + "t" * 16}
loaded = client.post("/model/load/", data={"file": (bundle, "old.lgbm.json")}, headers=admin)
answers = [client.post("/model/predict/", json=body) for body in (
    {**REFERENCE_FLIGHT, "gate": "C12"}, REFERENCE_FLIGHT, {**REFERENCE_FLIGHT, "gate": "gate 12"})]
flight_doc = client.get("/openapi.json").get_json()["components"]["schemas"]["Flight"]
fast = accepted_values([{**REFERENCE_FLIGHT, "gate": "C12"}, REFERENCE_FLIGHT])
print(json.dumps({
    "package": flight_delay.__file__,
    "dataset_columns": [c.name for c in DATASET_COLUMNS],
    "loaded": loaded.status_code,
    "answers": [[a.status_code, a.get_json()] for a in answers],
    "fast_values": None if fast is None else [values.get("gate", "absent") for values in fast],
    "history_inputs": [i["input"] for i in client.get("/model/history/", headers=admin).get_json()["items"]],
    "openapi_gate": flight_doc["properties"].get("gate"),
}))
"""


def follow_recipe(src: Path) -> None:
    """Adds the field to the registry and its rule to the rules, as the recipe says."""
    features = src / "flight_delay" / "features.py"
    text = features.read_text()
    end = text.index("\n)\n", text.index("API_FIELDS: tuple"))  # the end of API_FIELDS
    features.write_text(f"{text[:end]}\n{FIELD_LINE}{text[end:]}")
    rules = src / "flight_delay" / "validation" / "rules.py"
    anchor = "FIELD_RULES: dict[str, FieldRule] = {\n"
    rules.write_text(rules.read_text().replace(anchor, f"{anchor}{CHECK_LINE}\n"))


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the copy of src/ with the recipe's field answers (run once: it starts a Python)."""
    src = tmp_path_factory.mktemp("recipe") / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    # The package as installed: the checkout's src/ (editable) here, site-packages in the image.
    shutil.copytree(Path(flight_delay.__file__).parent, src / "flight_delay", ignore=ignore)
    follow_recipe(src)
    env = {**os.environ, "PYTHONPATH": f"{src}:{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(V1_BUNDLE)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["package"].startswith(str(src))  # the copy was imported, not the repository's src/
    return result


def test_contributing_shows_the_lines_the_test_adds() -> None:
    text = CONTRIBUTING.read_text()
    assert FIELD_LINE.strip() in text
    assert CHECK_LINE.strip() in text


def test_the_api_accepts_the_field_and_records_it(grown: dict[str, Any]) -> None:
    (with_gate, without), (refused_status, refused) = grown["answers"][:2], grown["answers"][2]
    assert grown["loaded"] == 201
    assert [with_gate[0], without[0]] == [200, 200]
    assert refused_status == 422
    assert refused["errors"] == {"gate": ["Must be a gate such as C12."]}
    # Newest first: the flight without the field, then the one with it, recorded as sent.
    assert [record.get("gate", "absent") for record in grown["history_inputs"]] == ["absent", "C12"]


def test_an_old_model_without_the_field_still_scores_the_same(grown: dict[str, Any]) -> None:
    (_, with_gate), (_, without) = grown["answers"][:2]
    score = with_gate["predictions"][0]["arr_delay"]
    assert score == without["predictions"][0]["arr_delay"] == pytest.approx(0.28335771286750383, abs=1e-12)


def test_the_fast_path_compiles_and_fills_the_default(grown: dict[str, Any]) -> None:
    assert grown["fast_values"] == ["C12", None]


def test_the_openapi_document_lists_the_field(grown: dict[str, Any]) -> None:
    gate = grown["openapi_gate"]
    assert gate["type"] == ["string", "null"] or (gate["type"], gate.get("nullable")) == ("string", True)
    assert gate["default"] is None
    assert gate["pattern"] == "^[A-Z][0-9]{1,3}$"
    assert gate["description"] == "flight field `gate`"


def test_the_dataset_does_not_grow(grown: dict[str, Any]) -> None:
    from flight_delay.features import DATASET_COLUMNS

    assert grown["dataset_columns"] == [c.name for c in DATASET_COLUMNS]
