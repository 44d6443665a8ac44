"""Progress: a live bar on a terminal, plain log lines elsewhere, never a word on stdout."""

from __future__ import annotations

import io
import logging
import re

import lightgbm as lgb
import numpy as np
import pytest

from flight_delay.progress import Progress, boosting_callback

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run_boosting_stage(progress: Progress, rounds: int = 20) -> None:
    """Goes through the stages with a bar over `rounds` steps in the second."""
    with progress.stage("features"):
        pass
    with progress.stage("boosting", total=rounds, unit="rounds") as advance:
        for _ in range(rounds):
            advance(1)


def test_not_a_terminal_gets_plain_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    progress = Progress("train", ("features", "boosting"), stream=stream)
    caplog.set_level(logging.INFO, logger="flight_delay.progress")

    run_boosting_stage(progress)

    assert not progress.interactive
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "train: stage 1/2: features"
    assert messages[1].startswith("train: stage 1/2: features: done in ")
    assert messages[2] == "train: stage 2/2: boosting"
    # A line every tenth of the rounds, not one per round.
    assert messages[3:-1] == [f"train: stage 2/2: boosting: {n}/20 rounds" for n in range(2, 21, 2)]
    assert messages[-1].startswith("train: stage 2/2: boosting: done in ")
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = FakeTerminal()
    progress = Progress("train", ("features", "boosting"), stream=stream)
    caplog.set_level(logging.INFO, logger="flight_delay.progress")

    run_boosting_stage(progress)

    assert progress.interactive
    drawn = stream.getvalue()
    assert "\x1b[" in drawn  # redrawn with terminal control codes
    shown = ANSI.sub("", drawn)
    assert "train: stage 1/2: features" in shown
    assert "train: stage 2/2: boosting" in shown
    assert "20/20 rounds" in shown
    assert not caplog.records


def test_a_stage_not_in_the_list_is_named_without_a_number() -> None:
    assert (
        Progress("notebook", stream=io.StringIO()).label("flight_delay.ipynb")
        == "notebook: flight_delay.ipynb"
    )


def test_the_lightgbm_callback_advances_once_per_round() -> None:
    rounds: list[int] = []
    features = np.random.default_rng(0).normal(size=(200, 3))
    lgb.train(
        {"objective": "regression", "verbosity": -1, "num_threads": 1},
        lgb.Dataset(features, label=features[:, 0]),
        num_boost_round=7,
        callbacks=[boosting_callback(rounds.append)],
    )

    assert rounds == [1] * 7
