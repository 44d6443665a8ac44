"""Writes docs/ui.png: the /ui/ page, 1280 px wide, over a week of real flights with their actual delays.

    .venv/bin/python -m tests.ui_screenshot [docs/ui.png]

A model trained on a sample of the real January-October flights serves 2,100 real November-December
flights through a real server (SQLite in a temporary folder); their history rows are then moved back
over the last 7 days (the API stamps predictions with the time they are served), and 80% get their
real arrival delay as an actual. The history rewritten, it is rolled up as an imported one would be
(`flight-delay rollup`; the server's own job is off). Needs scripts/ensure_chromium.sh.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import bindparam, create_engine, select, update

from flight_delay.data.nycflights import build_dataset
from flight_delay.history.models import Prediction
from flight_delay.training.lightgbm_trainer import train_model
from tests.browser import chromium, open_page
from tests.factories import ADMIN_HEADERS, write_pickle
from tests.monitoring_helpers import flights_of
from tests.servers import serve_with_model

FLIGHTS = 2_100
DAYS = 7
BATCH = 300


def backdate(database_url: str) -> None:
    """Spreads the history's rows evenly over the last DAYS days, in the order of their ids."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        rows = connection.execute(select(Prediction.id, Prediction.created_at).order_by(Prediction.id)).all()
        step = timedelta(days=DAYS) / len(rows)
        moved = [{"row": i, "at": at - step * (len(rows) - n)} for n, (i, at) in enumerate(rows)]
        statement = (
            update(Prediction).where(Prediction.id == bindparam("row")).values(created_at=bindparam("at"))
        )
        connection.execute(statement.execution_options(synchronize_session=False), moved)
    engine.dispose()


def fill(url: str, flights: list[dict], actual_delays: list[float], database_url: str) -> None:
    """Predicts the flights (request ids demo-N), backdates them, posts 80% of their actual delays."""
    ids = []
    for start in range(0, len(flights), BATCH):
        body = {"flights": flights[start : start + BATCH]}
        answer = requests.post(
            f"{url}/model/predict/", json=body, headers={"X-Request-ID": f"demo-{start // BATCH}"}, timeout=60
        )
        ids += [p["history_id"] for p in answer.json()["predictions"]]
    backdate(database_url)
    actuals = [
        {"history_id": i, "arr_delay": d}
        for n, (i, d) in enumerate(zip(ids, actual_delays, strict=True))
        if n % 5
    ]
    posted = requests.post(
        f"{url}/model/actuals/", json={"actuals": actuals}, headers=ADMIN_HEADERS, timeout=60
    )
    assert posted.status_code == 200, posted.text
    rolled = subprocess.run(
        [str(Path(sys.executable).parent / "flight-delay"), "rollup"],
        env={**os.environ, "DATABASE_URL": database_url},
        check=False,
    )
    assert rolled.returncode == 0


def main(out: Path) -> None:
    """Trains, serves, fills the history and takes the screenshot."""
    data = build_dataset()
    late = data["month"].isin((11, 12))
    model = train_model(
        data[~late].sample(8_000, random_state=0), data[late].sample(500, random_state=0), rounds=30
    )
    served = data[late & data["arr_delay"].notna()].sample(FLIGHTS, random_state=1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        database_url = f"sqlite:///{root / 'data' / 'flight_delay.db'}"
        model_path = write_pickle(model, root / "model.pkl")
        with serve_with_model(
            root / "data", database_url, model_path, MONITORING_ROLLUP_INTERVAL_S="0"
        ) as server:
            fill(server.url, flights_of(served), served["arr_delay"].astype(float).tolist(), database_url)
            with chromium(1280, 1000) as driver:
                open_page(driver, f"{server.url}/ui/?page_size=20")
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1280, height + 100)
                driver.save_screenshot(str(out))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/ui.png"))
