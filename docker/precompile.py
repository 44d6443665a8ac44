"""Writes the bytecode of what the service imports at start, and only that (the image's builder stage).

The builder deletes every .pyc of the virtualenv, then runs this: it imports what the server, its
workers, the CLI, the history writer, the model sandbox and the roll-up job import, checks a pickled
LGBMRegressor (the case's upload) as the sandbox does and loads its native form as a worker does,
then compiles every module of the virtualenv so imported (unchecked-hash bytecode: valid whatever the
files' times become in the image). Last it checks and loads a pickled pipeline of the scikit-learn
steps a pipeline may hold, proving the slimmed venv still serves one: what only a pipeline imports
(~90 modules, ~5 MB of bytecode) compiles in memory when a process loads one (the venv is not
writable), as does anything else imported later.
"""

from __future__ import annotations

import importlib
import pickle
import py_compile
import subprocess
import sys
import tempfile
from importlib.util import cache_from_source
from pathlib import Path

import lightgbm as lgb
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flight_delay.compat.sklearn_internals import PICKLED_CLASSES
from flight_delay.features import REFERENCE_FLIGHT

MODULES = (
    "flight_delay.api",
    "flight_delay.cli",
    "flight_delay.server",
    "flight_delay.history.host_writer",
    "flight_delay.history.migrate",
    "flight_delay.monitoring.rollup_job",
    "flight_delay.training.dummy",  # make docker/model_dummy trains in the container
    "flight_delay.serving.loader",
    "flight_delay.serving.sandbox_server",  # the model sandbox, a process of its own beside the workers
    "alembic.command",
    "psycopg",
)


def pipeline_bytes() -> bytes:
    """A pickled pipeline of common steps ending in LightGBM, as a user would upload it."""
    frame = pd.DataFrame({"carrier": ["UA", "AA"] * 20, "dep_delay": [float(i) for i in range(40)]})
    steps = ColumnTransformer(
        [
            ("carrier", OneHotEncoder(handle_unknown="ignore"), ["carrier"]),
            ("delay", Pipeline([("fill", SimpleImputer()), ("scale", StandardScaler())]), ["dep_delay"]),
        ]
    )
    model = Pipeline([("encode", steps), ("model", lgb.LGBMRegressor(n_estimators=2, verbose=-1))])
    return pickle.dumps(model.fit(frame, frame["dep_delay"] * 2))


def regressor_bytes() -> bytes:
    """A pickled LGBMRegressor fitted on dataset columns, as the case's notebook uploads it."""
    frame = pd.DataFrame({"dep_delay": [float(i) for i in range(40)], "distance": [500.0, 1400.0] * 20})
    return pickle.dumps(lgb.LGBMRegressor(n_estimators=2, verbose=-1).fit(frame, frame["dep_delay"] * 2))


def scored(data: bytes) -> float:
    """Checks an upload as the sandbox does, loads its native form as a worker does, scores a flight."""
    from flight_delay.serving.loader import check_upload, load_native

    kind, native = check_upload(data)
    return float(load_native(native, kind).predict([REFERENCE_FLIGHT])[0])


def served_modules(regressor: Path) -> list[Path]:
    """The files of the venv's modules a fresh process imports to serve, and to load the regressor."""
    for name in MODULES:
        importlib.import_module(name)
    scored(regressor.read_bytes())
    sources = {Path(m.__file__) for m in list(sys.modules.values()) if getattr(m, "__file__", None)}
    return sorted(p for p in sources if p.suffix == ".py" and Path(sys.prefix) in p.parents)


def main() -> None:
    """Compiles what serving imports (listed by a fresh process), then checks a pipeline still serves."""
    with tempfile.TemporaryDirectory() as folder:
        regressor = Path(folder) / "regressor.pkl"
        regressor.write_bytes(regressor_bytes())
        listed = subprocess.run(  # noqa: S603 (this very script, with a path it made)
            [sys.executable, __file__, str(regressor)], check=True, capture_output=True, text=True
        )
    sources = [Path(line) for line in listed.stdout.splitlines()]
    compile_sources(sources)
    for qualified in sorted(PICKLED_CLASSES):  # every class a served pickle may hold still imports
        importlib.import_module(qualified.rsplit(".", 1)[0])
    print(f"precompiled {len(sources)} modules; a pipeline scores {scored(pipeline_bytes()):.2f}")


def compile_sources(sources: list[Path]) -> None:
    """Writes the modules' bytecode beside them, unchecked-hash."""
    for source in sources:
        py_compile.compile(
            str(source),
            cfile=cache_from_source(str(source)),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )


if __name__ == "__main__":
    if len(sys.argv) > 1:  # the child: lists what serving imports
        print("\n".join(str(path) for path in served_modules(Path(sys.argv[1]))))
    else:
        main()
