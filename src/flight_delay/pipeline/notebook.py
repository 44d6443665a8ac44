"""Executes the notebook with nbclient: `python -m flight_delay.pipeline.notebook PATH [--out OUT]`."""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CELL_TIMEOUT_S = 1800


def execute_notebook(path: Path, out: Path | None = None, *, timeout: int = CELL_TIMEOUT_S) -> Path:
    """Runs every cell of a notebook top to bottom (in its folder) and writes it with its outputs."""
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent.resolve())}},
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
    print(f"executed {execute_notebook(args.path, args.out)}")


if __name__ == "__main__":
    main()
