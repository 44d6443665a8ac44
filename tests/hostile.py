"""A corpus of hostile model files: each, if it ran, would create a canary file (or exhaust the server)."""

from __future__ import annotations

import builtins
import functools
import importlib
import io
import operator
import os
import pickle
import pkgutil
import posix
import struct
import subprocess
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
import pandas as pd
import pip

from flight_delay.artifact import FlightDelayModel


class Call:
    """Pickles as `fn(*args)`: the __reduce__ trick every pickle exploit uses; callable so it can nest."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args

    def __call__(self, *args: Any) -> Any:
        raise AssertionError("only ever pickled")


def touch_command(canary: Path) -> str:
    """A shell command that creates the canary."""
    return f"touch {canary}"


def python_touch(canary: Path) -> str:
    """Python source that creates the canary."""
    return f"open({str(canary)!r}, 'w').close()"


def os_attr(name: str) -> Call:
    """`getattr(__import__('os'), name)` as nested reduces."""
    return Call(getattr, Call(builtins.__import__, "os"), name)


def reduce_payloads(canary: Path, tmp: Path) -> dict[str, Any]:
    """Objects whose pickles call something that creates the canary."""
    evil_pickle = tmp / "inner.pkl"
    evil_pickle.write_bytes(pickle.dumps(Call(os.system, touch_command(canary))))
    return {
        "os.system": Call(os.system, touch_command(canary)),
        "posix.system": Call(posix.system, touch_command(canary)),
        "subprocess.Popen": Call(subprocess.Popen, ["touch", str(canary)]),
        "builtins.exec": Call(builtins.exec, python_touch(canary)),
        "builtins.eval": Call(builtins.eval, python_touch(canary)),
        "getattr-import-chain": Call(os_attr("system"), touch_command(canary)),
        "importlib.import_module": Call(
            Call(getattr, Call(importlib.import_module, "os"), "system"), touch_command(canary)
        ),
        "pkgutil.resolve_name": Call(Call(pkgutil.resolve_name, "os:system"), touch_command(canary)),
        "numpy.load": Call(np.load, str(evil_pickle), None, True),
        "pandas.read_pickle": Call(pd.read_pickle, str(evil_pickle)),
        "pickle.loads-nested": Call(pickle.loads, evil_pickle.read_bytes()),
        "pip.main": Call(pip.main, ["download", "--no-deps", "-d", str(canary), "nothing-here"]),
        "functools.partial": Call(functools.partial(os.system, touch_command(canary))),
        "operator.methodcaller": Call(
            operator.methodcaller("system", touch_command(canary)), Call(builtins.__import__, "os")
        ),
        "inside-allowed-ordereddict": OrderedDict(x=Call(os.system, touch_command(canary))),
        "inside-a-project-artifact": FlightDelayModel(
            booster=None,  # type: ignore[arg-type]
            contract=None,  # type: ignore[arg-type]
            metrics={"mae": Call(os.system, touch_command(canary))},
        ),
        "deeply-nested-reduce": [[[[{"k": (Call(os.system, touch_command(canary)),)}]]]],
    }


def cloudpickle_payloads(canary: Path) -> dict[str, bytes]:
    """Code objects: functions pickled by value, which cloudpickle rebuilds and then calls."""
    target = str(canary)

    def make_canary() -> None:
        open(target, "w").close()

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[()]]:
            return make_canary, ()

    return {
        "cloudpickle-function-by-value": cloudpickle.dumps(Evil()),
        "cloudpickle-lambda-in-state": cloudpickle.dumps(OrderedDict(f=lambda: open(target, "w"))),
    }


def opcode_payloads(canary: Path) -> dict[str, bytes]:
    """Hand-written opcode streams: obfuscated references that no pickler would write."""
    command = touch_command(canary).encode()

    def unicode(text: bytes) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text

    call = b"\x8c" + bytes([len(command)]) + command + b"\x85R."  # push arg, TUPLE1, REDUCE, STOP
    return {
        "protocol-0-GLOBAL": b"cos\nsystem\n(S'" + command + b"'\ntR.",
        "protocol-0-INST": b"(S'" + command + b"'\nios\nsystem\n.",
        "protocol-1-OBJ": b"(cos\nsystem\nS'" + command + b"'\no.",
        "stack-global-memoised": b"\x80\x04"
        + unicode(b"os")
        + b"\x94"
        + unicode(b"system")
        + b"\x94\x93"
        + call,
        "stack-global-via-binget": (
            b"\x80\x04" + unicode(b"posix") + b"q\x07" + b"0" + unicode(b"x") + b"0"
            b"h\x07" + unicode(b"system") + b"\x93" + call
        ),
        "stack-global-dynamic-operand": b"\x80\x04)" + unicode(b"system") + b"\x93" + call,
        "stack-global-behind-pop": (
            b"\x80\x04" + unicode(b"os") + unicode(b"junk") + b"0" + unicode(b"system") + b"\x93" + call
        ),
        "global-after-stop": pickle.dumps({"weights": [1]}) + pickle.dumps(Call(os.system, "true")),
    }


def bomb_payloads() -> dict[str, bytes]:
    """Files that try to exhaust memory or time rather than run code."""
    nested = b"\x80\x04" + b"(" * 100_000 + b"l" * 100_000 + b"."
    # Each step: memo[0] = top, pop it, push a new list, get memo[0], append: the new list holds the old.
    memo_chain = b"\x80\x04]" + b"r\x00\x00\x00\x000]j\x00\x00\x00\x00a" * 50_000 + b"."
    return {
        "deep-marks": nested,
        "deep-list-via-memo": memo_chain,
        "huge-memo-index": b"\x80\x04Nr\xff\xff\xff\xff.",
        "huge-binbytes8": b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"x" * 16 + b".",
        "huge-binunicode8": b"\x80\x04\x8d" + struct.pack("<Q", 2**40) + b"x" * 16 + b".",
        "huge-frame": b"\x80\x04\x95" + struct.pack("<Q", 2**50) + b"N.",
        "huge-long4": b"\x80\x02\x8b" + struct.pack("<i", 2**30) + b"\x01" * 16 + b".",
        "numpy-reconstruct-huge-shape": _numpy_call(
            "numpy._core.multiarray", "_reconstruct", b"(cnumpy\nndarray\n(J\x00\xe8\x76\x48tC\x01Ot"
        ),
        "numpy-object-array-forged-state": forged_object_array(),
        "numpy-ndarray-object-huge": _numpy_call("numpy", "ndarray", b"((J\x00\xca\x9a\x3btU\x01Ot"),
        "too-many-opcodes": b"\x80\x04" + b"N0" * 600_000 + b"N.",
    }


def metadata_bombs(model: FlightDelayModel) -> dict[str, bytes]:
    """A real artifact whose metrics are a billion laughs (shared references) or nest 200 deep."""
    laughs: Any = ["lol"]
    for _ in range(9):
        laughs = [laughs] * 10  # 10**9 leaves, a few hundred bytes pickled
    deep: Any = "bottom"
    for _ in range(200):
        deep = [deep]
    return {
        "billion-laughs-in-metrics": pickle.dumps(_with_metrics(model, {"laughs": laughs})),
        "deep-nesting-in-metrics": pickle.dumps(_with_metrics(model, {"deep": deep})),
    }


def _with_metrics(model: FlightDelayModel, metrics: dict[str, Any]) -> FlightDelayModel:
    """A copy of model with other metrics."""
    return FlightDelayModel(booster=model.booster, contract=model.contract, metrics=metrics)


def _numpy_call(module: str, name: str, args: bytes) -> bytes:
    """A protocol-2 stream calling module.name with the (protocol 0/1 written) argument tuple args."""
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + args + b"R."


def forged_object_array() -> bytes:
    """A real object array's pickle whose state claims 10**6 elements but carries one (numpy crashes)."""
    data = pickle.dumps(np.array([None], dtype=object), protocol=2)
    return data.replace(b"K\x01\x85", b"J\x40\x42\x0f\x00\x85", 1)


def malformed_files(valid: bytes) -> dict[str, bytes]:
    """Truncations of a real model and bytes that are no model at all."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", valid)
    joblib_compressed = io.BytesIO()
    joblib.dump({"weights": np.arange(3)}, joblib_compressed, compress=3)
    joblib_arrays = io.BytesIO()
    joblib.dump({"weights": np.arange(1000.0)}, joblib_arrays)
    rng = np.random.default_rng(0)
    return {
        **{f"truncated-{pct}pct": valid[: len(valid) * pct // 100] for pct in (1, 10, 50, 90, 99)},
        "truncated-by-one": valid[:-1],
        "random-bytes": rng.bytes(4096),
        "text": b"this is not a model\n",
        "html": b"<!doctype html><title>model</title>",
        "json-not-a-bundle": b'{"weights": [1, 2, 3]}',
        "lightgbm-text-garbage": b"tree\nversion=v4\nnum_class=banana\n",
        "zip-container": zipped.getvalue(),
        "joblib-compressed": joblib_compressed.getvalue(),
        "joblib-with-arrays": joblib_arrays.getvalue(),
    }


def every_protocol(objects: dict[str, Any], dumps: Callable[..., bytes] = pickle.dumps) -> dict[str, bytes]:
    """Pickles each object with every protocol, 0 to 5."""
    return {
        f"{name}-p{protocol}": dumps(obj, protocol=protocol)
        for name, obj in objects.items()
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
    }


# --- issue 27: uploads that passed the allowlist and then crashed, read files or ate memory ---------


def null_handle_booster() -> bytes:
    """A 45-byte pickle of a lightgbm Booster whose handle is null: its first use is a SIGSEGV."""
    return b"\x80\x02clightgbm.basic\nBooster\n)\x81}X\x07\x00\x00\x00_handleNsb."


def aborting_text_model(text: str) -> bytes:
    """A LightGBM text model with one digit of tree_sizes= changed: LightGBM's parser aborts (SIGABRT)."""
    start = text.index("tree_sizes=") + len("tree_sizes=")
    digit = str((int(text[start]) + 1) % 10)
    return (text[:start] + digit + text[start + 1 :]).encode()


def booster_reading(path: Path) -> bytes:
    """`lightgbm.basic.Booster(None, None, PATH)`: the allowlisted class called with a model file."""
    encoded = str(path).encode()
    return (
        b"\x80\x02clightgbm.basic\nBooster\nNNX"
        + struct.pack("<I", len(encoded))
        + encoded
        + b"\x87R."  # TUPLE3, REDUCE
    )


def function_transformer_reading(path: Path, regressor: Any, columns: list[str]) -> bytes:
    """A Pipeline whose FunctionTransformer calls lightgbm.basic.Booster(X, model_file=PATH)."""
    import lightgbm as lgb
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    frame = pd.DataFrame({name: [1.0, 2.0] for name in columns})
    reader = FunctionTransformer().fit(frame)
    reader.func, reader.kw_args = lgb.Booster, {"model_file": str(path)}
    return pickle.dumps(Pipeline([("read", reader), ("model", regressor)]))


def object_arrays(count: int = 5, elements: int = 50_000_000) -> bytes:
    """`count` object arrays of `elements` each, in a few dozen bytes (each under a per-array limit)."""
    array = b"h\x00(J" + struct.pack("<i", elements) + b"\x85U\x01OtR"  # ndarray((elements,), "O")
    return b"\x80\x02cnumpy\nndarray\nq\x00(" + array * count + b"l."


def subarray_dtype_array(elements: int = 50_000_000) -> bytes:
    """numpy.ndarray((5,), "(N,)f8"): five elements whose dtype is itself an array of N floats."""
    spec = f"({elements},)f8".encode()
    return b"\x80\x02cnumpy\nndarray\n(K\x05\x85U" + bytes([len(spec)]) + spec + b"tR."


def bundle_with_metrics(bundle: bytes, metrics: Any) -> bytes:
    """A valid .lgbm.json bundle whose metrics are replaced."""
    import json

    return json.dumps({**json.loads(bundle), "metrics": metrics}).encode()


ISSUE_27 = (
    "SIGSEGV pickle (null Booster handle)",
    "SIGABRT text model (tree_sizes digit)",
    "Booster(None, None, PATH)",
    "Booster(None, None, /dev/zero)",
    "FunctionTransformer(Booster, model_file=PATH)",
    "five 50M-element object arrays",
    "subarray dtype (5 x 50M floats)",
    'bundle with metrics {"bases": 1}',
)


def issue_27_reproductions(work: Path) -> dict[str, bytes]:
    """Each hostile upload issue 27 reproduced (a worker crashed, read the disk or grew by GiBs)."""
    from flight_delay.artifact import to_bundle
    from tests.factories import tiny_model, tiny_regressor

    columns = ["dep_delay", "distance"]
    regressor = tiny_regressor(columns)
    secret = work / "secret.txt"
    secret.write_text("not a model\n")
    uploads = (
        null_handle_booster(),
        aborting_text_model(regressor.booster_.model_to_string()),
        booster_reading(secret),
        booster_reading(Path("/dev/zero")),
        function_transformer_reading(secret, regressor, columns),
        object_arrays(),
        subarray_dtype_array(),
        bundle_with_metrics(to_bundle(tiny_model(0)), {"bases": 1}),
    )
    return dict(zip(ISSUE_27, uploads, strict=True))
