"""Prints what each installed distribution weighs on disk, its bytecode included, largest first.

For the table in docs/ARCHITECTURE.md ("The image and its builds"), read inside the image:

    docker run -i --rm --entrypoint python flight-delay:latest - < scripts/image_sizes.py

A file counts once, for the first distribution that lists it; what no distribution lists (the
virtualenv's own files) is shown as "(venv)"; links (the venv's python) are not counted.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path


def on_disk(path: Path) -> int:
    """A file's size in bytes (0 when it is gone: the image's slimming removed it)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def distribution_files(dist: metadata.Distribution) -> set[Path]:
    """A distribution's files that exist, with the bytecode of its modules."""
    found = set()
    for entry in dist.files or ():
        path = Path(os.path.abspath(dist.locate_file(entry)))
        found.add(path)
        if path.suffix == ".py":
            cached = path.parent / "__pycache__"
            found.update(cached.glob(f"{path.stem}.*.pyc"))
    return {path for path in found if path.is_file()}


def main() -> None:
    """Prints one line per distribution: MB on disk and the name, then the total."""
    seen: set[Path] = set()
    sizes = {}
    for dist in metadata.distributions():
        files = distribution_files(dist) - seen
        seen |= files
        sizes[dist.metadata["Name"]] = sum(on_disk(path) for path in files)
    # Links not followed: the venv's python is the base image's.
    every = {Path(root, name) for root, _, names in os.walk(sys.prefix) for name in names}
    every = {path for path in every if not path.is_symlink()}
    sizes["(venv)"] = sum(on_disk(path) for path in every - seen)
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        print(f"{size / 1e6:8.1f} MB  {name}")
    print(f"{sum(sizes.values()) / 1e6:8.1f} MB  total under {sys.prefix}")


if __name__ == "__main__":
    main()
