"""Executes the notebook with nbclient: `python -m flight_delay.pipeline.notebook PATH [--out OUT]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from flight_delay.progress import Progress

CELL_TIMEOUT_S = 1800


def execute_notebook(
    path: Path, out: Path | None = None, *, timeout: int = CELL_TIMEOUT_S, progress: Progress | None = None
) -> Path:
    """Runs every cell of a notebook top to bottom (in its folder) and writes it with its outputs."""
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    # nbclient skips empty code cells: they have no hook call, so no step in the bar either.
    cells = sum(1 for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip())
    with (progress or Progress("notebook")).stage(path.name, total=cells, unit="cells") as advance:
        client = NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent.resolve())}},
            on_cell_executed=lambda **_: advance(1),
        )
        client.execute()
    target = Path(out or path)
    nbformat.write(notebook, target)
    return target


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and executes the notebook (in place unless --out)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    # Where stderr is not a terminal, the progress is these log lines.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(f"executed {execute_notebook(args.path, args.out)}")


if __name__ == "__main__":
    main()
