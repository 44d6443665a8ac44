"""Each dependency's private API we use (src/flight_delay/compat/) is still there and behaves as relied on.

A failure here means the installed dependency changed something its documentation never promised:
read the compat module named in the message, which says what breaks and why no public API does it.
"""

from __future__ import annotations

import ast
import asyncio
import ctypes
import importlib
import inspect
import pickle
import pickletools
import pkgutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
import uvicorn
from flask import Flask
from flask_smorest import Blueprint
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from uvicorn.server import ServerState

from flight_delay import compat
from flight_delay.api.blueprint import ApiBlueprint
from flight_delay.api.docs import FlightDelayApi
from flight_delay.compat import (
    gunicorn_internals,
    lightgbm_internals,
    numpy_internals,
    python_internals,
    sklearn_internals,
    uvicorn_internals,
)
from flight_delay.compat import uvicorn_protocol as http_protocol
from flight_delay.serving.safe_pickle import restricted_loads, scan_globals
from flight_delay.serving.single_row import SingleRowPredictor
from tests.factories import tiny_model

ROOT = Path(__file__).resolve().parents[1]
# Each compat module and the distribution whose internals it uses (None: the Python interpreter).
DEPENDENCY_OF = {
    "flask_smorest_internals": "flask-smorest",
    "gunicorn_internals": "gunicorn",
    "lightgbm_internals": "lightgbm",
    "numpy_internals": "numpy",
    "python_internals": None,
    "sklearn_internals": "scikit-learn",
    "uvicorn_internals": "uvicorn",
    "uvicorn_protocol": "uvicorn",
}


def compat_modules() -> list[str]:
    """The modules of the compat package."""
    return sorted(info.name for info in pkgutil.iter_modules(compat.__path__))


def declared_dependencies() -> dict[str, Requirement]:
    """pyproject.toml's dependencies, by canonical name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(r.name): r for r in map(Requirement, project["dependencies"])}


def serving_pins() -> dict[str, str]:
    """requirements.txt's exact versions, by canonical name."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pairs}


def next_minor(version: str) -> str:
    """The first release of the minor version after `version`'s."""
    release = Version(version).release
    return f"{release[0]}.{release[1] + 1}.0"


# --- every compat module: documented, and its dependency pinned to the minor version it was checked on


def test_every_compat_module_names_its_dependency() -> None:
    assert compat_modules() == sorted(DEPENDENCY_OF), (
        "a compat module was added or removed: record its dependency in DEPENDENCY_OF, pin it in "
        "pyproject.toml and test its private API here"
    )


@pytest.mark.parametrize("module", sorted(DEPENDENCY_OF))
def test_every_compat_module_says_what_it_uses_why_and_what_breaks(module: str) -> None:
    doc = importlib.import_module(f"flight_delay.compat.{module}").__doc__ or ""
    for section in ("What is used", "Why no public API does it", "What breaks if it changes"):
        assert f"{section}:" in doc, f"compat/{module}.py's docstring lacks '{section}:'"


@pytest.mark.parametrize("name", sorted(d for d in DEPENDENCY_OF.values() if d))
def test_each_dependency_is_pinned_to_the_installed_minor_version(name: str) -> None:
    requirement = declared_dependencies()[canonicalize_name(name)]
    installed = metadata.version(name)
    assert requirement.specifier.contains(installed), (
        f"{name} {installed} is installed, but its private API was checked for {requirement.specifier}: "
        "re-run these tests against it, fix compat/, then move the pin"
    )
    assert not requirement.specifier.contains(next_minor(installed)), (
        f"pyproject.toml must pin {name} to one minor version ({requirement.specifier} is wider)"
    )
    pinned = serving_pins()[canonicalize_name(name)]
    assert requirement.specifier.contains(pinned), f"requirements.txt's {name}=={pinned} is outside it"


def test_the_python_minor_version_is_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    running = ".".join(map(str, sys.version_info[:3]))
    specifier = Requirement(f"python{project['requires-python']}").specifier
    assert specifier.contains(running), f"Python {running} is outside requires-python {specifier}"
    assert not specifier.contains(next_minor(running)), "requires-python must pin one minor version"


# --- LightGBM: _LIB, _safe_call, Booster._handle, LightGBMError, a pickled Booster's state


def test_lightgbm_library_has_the_c_functions_we_call() -> None:
    assert isinstance(lightgbm_internals.LIB, ctypes.CDLL), "lightgbm.basic._LIB is no longer a ctypes CDLL"
    for name in lightgbm_internals.C_FUNCTIONS:
        assert hasattr(lightgbm_internals.LIB, name), f"lib_lightgbm no longer exports {name}"


def test_lightgbm_safe_call_raises_lightgbm_error_with_the_library_message() -> None:
    lightgbm_internals.safe_call(0)
    handle, iterations = ctypes.c_void_p(), ctypes.c_int()
    ret = lightgbm_internals.LIB.LGBM_BoosterLoadModelFromString(
        ctypes.c_char_p(b"not a model"), ctypes.byref(iterations), ctypes.byref(handle)
    )
    with pytest.raises(lightgbm_internals.LightGBMError, match=r"\w"):
        lightgbm_internals.safe_call(ret)
    with pytest.raises(lightgbm_internals.LightGBMError):  # what the package raises itself
        lgb.Booster(model_str="not a model")


def test_lightgbm_booster_handle_is_its_c_booster() -> None:
    booster = tiny_model(seed=3).booster
    handle = lightgbm_internals.booster_handle(booster)
    assert isinstance(handle, ctypes.c_void_p), "Booster._handle is no longer a C pointer"
    assert handle.value, "Booster._handle is null for a trained booster"
    features = ctypes.c_int()
    lightgbm_internals.safe_call(
        lightgbm_internals.LIB.LGBM_BoosterGetNumFeature(handle, ctypes.byref(features))
    )
    assert features.value == booster.num_feature()


def test_lightgbm_pickled_booster_state_holds_its_text_model_under_the_keys_we_read() -> None:
    booster = tiny_model(seed=3).booster
    state = booster.__getstate__()
    first, second = lightgbm_internals.BOOSTER_STATE_MODEL_KEYS
    assert isinstance(state.get(first), str), f"Booster.__getstate__ no longer holds the model as {first}"
    assert state[first].startswith("tree\n")
    source = inspect.getsource(lgb.Booster.__setstate__)
    assert f'state.get("{first}", state.get("{second}"' in source, "Booster.__setstate__ reads other keys"


def test_lightgbm_single_row_api_predicts_as_booster_predict() -> None:
    booster = tiny_model(seed=3).booster
    row = np.linspace(-1.0, 1.0, booster.num_feature())
    assert SingleRowPredictor(booster).predict(row) == booster.predict(row[None, :], num_threads=1)[0]


# --- uvicorn: HttpToolsProtocol's methods and state


class FakeTransport:
    """A transport that records what the protocol does to it."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def make_protocol(app: Any, protocol_class: type = uvicorn_internals.HttpToolsProtocol) -> Any:
    """A connected protocol (inside a running loop) serving `app`."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(FakeTransport())
    return protocol


REQUEST = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"


def test_uvicorn_protocol_has_the_methods_we_override() -> None:
    for name in uvicorn_internals.OVERRIDDEN_CALLBACKS:
        assert callable(getattr(uvicorn_internals.HttpToolsProtocol, name, None)), (
            f"uvicorn's HttpToolsProtocol no longer has {name}, which LimitedHttpToolsProtocol overrides"
        )


def test_limited_protocol_overrides_only_the_listed_methods() -> None:
    asyncio_methods = {"connection_made", "connection_lost", "data_received"}
    base = uvicorn_internals.HttpToolsProtocol
    own = vars(http_protocol.LimitedHttpToolsProtocol)
    overridden = {name for name in own if callable(own[name]) and hasattr(base, name)}
    assert overridden <= asyncio_methods | set(uvicorn_internals.OVERRIDDEN_CALLBACKS)


def test_limited_protocol_reads_only_the_listed_inherited_attributes() -> None:
    """Anything else of uvicorn's it reads must go through compat/uvicorn_internals.py."""
    tree = ast.parse(Path(http_protocol.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LimitedHttpToolsProtocol"]
    own = {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    own |= {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    own |= {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    read = {
        n.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    assert read - own <= set(uvicorn_internals.INHERITED_ATTRIBUTES)


def test_uvicorn_protocol_state_after_connecting() -> None:
    async def check() -> None:
        protocol = make_protocol(never_answers([]))
        for name in uvicorn_internals.INHERITED_ATTRIBUTES:
            assert getattr(protocol, name, None) is not None, f"uvicorn's protocol no longer sets {name}"
        assert isinstance(protocol.transport, FakeTransport)
        assert protocol.loop is asyncio.get_running_loop()
        assert uvicorn_internals.latest_cycle(protocol) is None
        assert not uvicorn_internals.latest_request_unanswered(protocol)
        assert not uvicorn_internals.requests_queued(protocol)
        assert not uvicorn_internals.reading_paused(protocol)
        headers = uvicorn_internals.default_headers(protocol)
        assert all(isinstance(name, bytes) and isinstance(value, bytes) for name, value in headers)

    asyncio.run(check())


def never_answers(received: list[dict[str, Any]]) -> Any:
    """An ASGI app that reads its request, then waits for the next message (a disconnect) and stops."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append(await receive())
        received.append(await receive())

    return app


def test_uvicorn_pipelining_queues_the_latest_request_and_pauses_reading() -> None:
    async def check() -> None:
        received: list[dict[str, Any]] = []
        protocol = make_protocol(never_answers(received))
        protocol.data_received(REQUEST % b"first")
        first = uvicorn_internals.latest_cycle(protocol)
        for name in uvicorn_internals.CYCLE_ATTRIBUTES:
            assert hasattr(first, name), f"uvicorn's RequestResponseCycle no longer has {name}"
        protocol.data_received(REQUEST % b"second")
        second = uvicorn_internals.latest_cycle(protocol)
        assert second is not first
        assert uvicorn_internals.latest_request_unanswered(protocol)
        assert uvicorn_internals.requests_queued(protocol), "a pipelined request is no longer queued"
        assert uvicorn_internals.reading_paused(protocol), "uvicorn no longer pauses reading to queue"
        assert protocol.transport.paused
        assert uvicorn_internals.drop_latest_if_queued(protocol), "the pipeline's latest is not on the left"
        assert not uvicorn_internals.requests_queued(protocol)
        uvicorn_internals.set_latest_cycle(protocol, first)
        uvicorn_internals.resume_reading(protocol)
        assert not uvicorn_internals.reading_paused(protocol)
        assert not protocol.transport.paused
        await asyncio.sleep(0.01)  # the first request's app reads its body, then waits
        assert not uvicorn_internals.response_started(first)
        uvicorn_internals.disconnect_app(first)
        await asyncio.sleep(0.01)
        assert [message["type"] for message in received] == ["http.request", "http.disconnect"]

    asyncio.run(check())


def test_uvicorn_answers_an_exception_in_a_parser_callback_with_send_400_response() -> None:
    class Refusing(uvicorn_internals.HttpToolsProtocol):
        """Refuses every header, recording how uvicorn answers."""

        refused: list[str] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            raise http_protocol.HeadTooLarge("refused")

        def send_400_response(self, msg: str) -> None:
            self.refused.append(msg)

    async def check() -> None:
        protocol = make_protocol(never_answers([]), Refusing)
        protocol.data_received(REQUEST % b"refused")
        assert len(protocol.refused) == 1, "uvicorn no longer calls send_400_response on a parser error"

    asyncio.run(check())


# --- gunicorn: Arbiter.manage_workers, Arbiter.app, BaseApplication.run


def test_gunicorn_arbiter_calls_manage_workers_on_each_turn_of_its_loop() -> None:
    assert callable(vars(Arbiter).get("manage_workers")), "gunicorn's Arbiter no longer has manage_workers"
    loop = inspect.getsource(Arbiter.run).split("while True:", 1)
    assert len(loop) == 2, "gunicorn's Arbiter.run no longer has its `while True:` main loop"
    assert "self.manage_workers()" in loop[1], (
        "gunicorn's Arbiter.run no longer calls manage_workers in its loop"
    )


def test_gunicorn_arbiter_keeps_its_application_as_app() -> None:
    assert "self.app = app" in inspect.getsource(Arbiter.setup), "gunicorn's Arbiter no longer sets .app"


def test_gunicorn_base_application_run_is_what_run_arbiter_repeats() -> None:
    source = inspect.getsource(BaseApplication.run)
    for step in ("Arbiter(self).run()", "except RuntimeError", "sys.exit(1)"):
        assert step in source, f"gunicorn's BaseApplication.run changed ({step!r}): update run_arbiter"


def test_turning_arbiter_runs_the_application_turn_before_managing_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    class Application:
        def arbiter_turn(self) -> None:
            calls.append("turn")

    monkeypatch.setattr(Arbiter, "manage_workers", lambda self: calls.append("workers"))
    arbiter = object.__new__(gunicorn_internals.TurningArbiter)  # no setup: nothing is bound or forked
    arbiter.app = Application()
    arbiter.manage_workers()
    assert calls == ["turn", "workers"]


# --- flask-smorest: _apidoc


def test_flask_smorest_alt_response_keeps_its_documentation_in_apidoc_and_only_calls_the_view() -> None:
    calls: list[Any] = []

    def view(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return "answer"

    wrapper = Blueprint("probe", __name__).alt_response(418, description="A teapot")(view)
    responses = wrapper._apidoc["response"]["responses"]  # type: ignore[attr-defined]
    assert responses[418][0]["description"] == "A teapot", "flask-smorest moved its documentation"
    with Flask(__name__).app_context():
        assert wrapper(1, key=2) == "answer"
    assert calls == [((1,), {"key": 2})], "alt_response's wrapper no longer only calls the view"


def test_flask_smorest_documents_what_apidoc_holds() -> None:
    app = Flask(__name__)
    app.config.update(API_TITLE="probe", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = FlightDelayApi(app)  # the app's: its error schema is the one error_responses documents
    blueprint = ApiBlueprint("probe", __name__)

    @blueprint.route("/probe")
    @blueprint.error_responses({418: "A teapot"})
    def probe() -> str:
        return "answer"

    api.register_blueprint(blueprint)
    responses = api.spec.to_dict()["paths"]["/probe"]["get"]["responses"]
    assert responses["418"]["description"] == "A teapot", "flask-smorest no longer reads _apidoc"
    assert app.test_client().get("/probe").get_data(as_text=True) == "answer"


# --- numpy: the reconstructors its pickles name


def resolve(qualified: str) -> Any:
    """Imports module.name as the unpickler does."""
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    ("value", "protocol", "reconstructor"),
    [
        (np.arange(3.0), 2, numpy_internals.ARRAY_RECONSTRUCTOR),
        (np.arange(3.0), 5, numpy_internals.BUFFER_RECONSTRUCTOR),
        (np.float64(1.5), 4, numpy_internals.SCALAR_RECONSTRUCTOR),
    ],
)
def test_numpy_pickles_name_the_reconstructors_we_guard(
    value: Any, protocol: int, reconstructor: str
) -> None:
    data = pickle.dumps(value, protocol=protocol)
    assert reconstructor in scan_globals(data), f"numpy's pickles no longer name {reconstructor}"
    assert callable(resolve(reconstructor))
    assert np.array_equal(restricted_loads(data), value), f"{reconstructor} takes other arguments now"


def test_numpy_reconstructor_arguments() -> None:
    _, args = np.arange(3).__reduce__()[:2]
    assert len(args) == 3, "numpy's _reconstruct takes other arguments"
    assert args[0] is np.ndarray
    _, args = np.float64(1.5).__reduce__()
    assert isinstance(args[0], np.dtype), "numpy's scalar takes other arguments"
    assert isinstance(args[1], bytes), "numpy's scalar takes other arguments"
    parameters = inspect.signature(resolve(numpy_internals.BUFFER_RECONSTRUCTOR)).parameters
    assert list(parameters)[:4] == ["buf", "dtype", "shape", "order"], "numpy's _frombuffer changed"


def test_numpy_core_is_where_numpy_1_core_went() -> None:
    assert numpy_internals.NUMPY_1_CORE.replace("core", "_core") == numpy_internals.NUMPY_CORE
    assert importlib.import_module(f"{numpy_internals.NUMPY_CORE}.multiarray")


# --- scikit-learn: where its classes are defined


def test_sklearn_function_transformer_keeps_its_functions_as_its_constructor_names_them() -> None:
    from sklearn.preprocessing import FunctionTransformer

    assert f"{FunctionTransformer.__module__}.{FunctionTransformer.__qualname__}" == (
        sklearn_internals.FUNCTION_TRANSFORMER
    )
    state = FunctionTransformer(func=abs, inverse_func=abs).__getstate__()
    assert state["func"] is abs, "FunctionTransformer's state no longer holds func"
    assert state["inverse_func"] is abs, "FunctionTransformer's state no longer holds inverse_func"


@pytest.mark.parametrize("qualified", sorted(sklearn_internals.PICKLED_CLASSES))
def test_sklearn_classes_are_defined_where_the_allowlist_says(qualified: str) -> None:
    cls = resolve(qualified)
    assert inspect.isclass(cls)
    assert f"{cls.__module__}.{cls.__qualname__}" == qualified, (
        f"scikit-learn moved {qualified} to {cls.__module__}: pickles now name that module"
    )


# --- CPython: pickle._Unpickler, copyreg._reconstructor


class Point:
    """A plain object, pickled with its __dict__ as state."""

    def __init__(self, x: int) -> None:
        self.x = x


def test_pickle_has_a_pure_python_unpickler_with_a_dispatch_table_and_a_dict_memo() -> None:
    unpickler = python_internals.PurePythonUnpickler
    assert unpickler is not pickle.Unpickler, "pickle._Unpickler is now the C unpickler"
    assert unpickler.__module__ == "pickle"
    assert isinstance(unpickler.dispatch, dict), "pickle._Unpickler has no dispatch table"
    assert all(isinstance(opcode, int) for opcode in unpickler.dispatch)
    assert unpickler.dispatch[pickle.BUILD[0]] is unpickler.load_build
    assert isinstance(unpickler(pickle.io.BytesIO(b".")).memo, dict)


class Recording(python_internals.HookedUnpickler):
    """Records what each hook is shown."""

    def __init__(self, data: bytes) -> None:
        super().__init__(pickle.io.BytesIO(data))
        self.opcodes, self.calls, self.builds = 0, [], []

    def on_opcode(self) -> None:
        self.opcodes += 1

    def on_call(self, func: Any, args: Any) -> None:
        self.calls.append((func, tuple(args)))

    def on_build(self, target: Any, state: Any) -> None:
        self.builds.append((target, state))


def test_hooked_unpickler_shows_build_its_target_and_state() -> None:
    recording = Recording(pickle.dumps(Point(7), protocol=2))
    loaded = recording.load()
    assert loaded.x == 7
    assert len(recording.builds) == 1
    assert isinstance(recording.builds[0][0], Point), (
        "BUILD's target is no longer second from the top of the stack"
    )
    assert recording.builds[0][1] == {"x": 7}, "BUILD's state is no longer on top of the stack"


def test_hooked_unpickler_runs_on_opcode_before_every_opcode() -> None:
    data = pickle.dumps([1, 2, 3], protocol=2)
    recording = Recording(data)
    recording.load()
    assert recording.opcodes == len(list(pickletools.genops(data))), (
        "the dispatch table is not the one we wrap"
    )


@pytest.mark.parametrize(
    ("data", "func", "args"),
    [
        (b"cbuiltins\nfrozenset\n(]K\x01atR.", frozenset, ([1],)),  # REDUCE
        (b"(cbuiltins\nslice\nK\x01K\x02o.", slice, (1, 2)),  # OBJ
        (b"(K\x01K\x02ibuiltins\nslice\n.", slice, (1, 2)),  # INST
    ],
    ids=["REDUCE", "OBJ", "INST"],
)
def test_hooked_unpickler_shows_each_call_before_making_it(data: bytes, func: Any, args: tuple) -> None:
    recording = Recording(data)
    loaded = recording.load()
    assert recording.calls == [(func, args)], "REDUCE's callable and arguments moved on the stack"
    assert loaded == func(*args)


def test_a_hook_that_raises_stops_the_call() -> None:
    class Refusing(python_internals.HookedUnpickler):
        def on_call(self, func: Any, args: Any) -> None:
            raise PermissionError(func)

    with pytest.raises(PermissionError):
        Refusing(pickle.io.BytesIO(b"cbuiltins\nfrozenset\n(]K\x01atR.")).load()


def test_pickle_names_copyreg_reconstructor_and_codecs_encode() -> None:
    assert python_internals.COPYREG_RECONSTRUCTOR in scan_globals(pickle.dumps(Point(1), protocol=1))
    assert python_internals.CODECS_ENCODE in scan_globals(pickle.dumps(b"bytes", protocol=2))
    rebuilt = python_internals.reconstruct_object(Point, object, None)
    assert type(rebuilt) is Point
