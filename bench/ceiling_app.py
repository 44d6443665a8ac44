"""The HTTP stack alone: Flask parsing the flight's JSON and answering a constant; no model, no database.

Served by gunicorn with our production worker settings, it shows the most requests per second Flask
and gunicorn can answer on this machine: the ceiling of any optimisation that keeps this stack.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

app = Flask("flight_delay_ceiling")


@app.post("/model/predict/")
def predict() -> dict[str, Any]:
    """Reads the JSON body and answers one fixed prediction."""
    flight = request.get_json()
    return {"model_version": "ceiling", "predictions": [{"history_id": 0, "arr_delay": float(len(flight))}]}


@app.get("/health/")
def health() -> dict[str, str]:
    """Answers once the worker is up, for the harness's readiness poll."""
    return {"status": "ok"}
