"""An unpickler that can only build model data: exact allowlisted globals, bounded, checked states.

Pickle is a small stack machine whose GLOBAL and REDUCE opcodes import and call anything. Blocklists
(picklescan, fickling) have been bypassed again and again, so this module does the opposite:

1. `scan_globals` reads the opcodes without running them and lists every global the file names; a
   name that is not in ALLOWED_GLOBALS, or a reference built in a way that cannot be read statically,
   refuses the file before anything is built.
2. `restricted_loads` then unpickles with the pure-Python unpickler (its memo is a dict, so a huge
   memo index allocates nothing), resolving only allowlisted names, counting opcodes, letting it
   call only data reconstructors (never a model class: `Booster(None, None, PATH)` would read PATH),
   bounding the bytes of all its numpy arrays together by the file's size, and checking states
   before they are applied: numpy arrays and dtypes (numpy's own `__setstate__` can crash the
   process on a forged object-array state), a Booster's (it must carry a text model: a null handle
   crashes the first prediction), a FunctionTransformer's (its functions must be None).

What is allowlisted are classes and data reconstructors, never functions that import, evaluate,
read files or resolve names. Callables that allocate from their arguments are wrapped with bounds.
This is the first, cheap gate: the whole read runs in the model sandbox (serving/sandbox.py).
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import pickle
import pickletools
from collections.abc import Callable
from typing import Any

import numpy as np

from flight_delay.compat import lightgbm_internals, numpy_internals, python_internals, sklearn_internals
from flight_delay.errors import InvalidArtifact

MAX_OPCODES = 500_000  # real artifacts need a few thousand
# All the numpy arrays of one file together may take this many bytes per byte of the file (plus a
# floor): a plain array's data is in the file, and an object array's elements take an opcode each.
ARRAY_BYTES_PER_FILE_BYTE = 8
ARRAY_BYTES_FLOOR = 1 << 20
LIGHTGBM_TEXT_PREFIX = "tree\n"

# Exact "module.name" references that real artifacts need (recorded from the project's artifact, bare
# LightGBM models and scikit-learn pipelines pickled with protocols 0-5), nothing broader.
CALLABLE_DATA_GLOBALS = frozenset(
    {
        "builtins.slice",
        "builtins.set",
        "builtins.frozenset",
        "collections.OrderedDict",
        "collections.defaultdict",
    }
)
DATA_GLOBALS = frozenset(
    {
        *CALLABLE_DATA_GLOBALS,
        "builtins.object",
        *(f"numpy.{name}" for name in ("float64", "float32", "int64", "int32", "int16", "int8")),
        *(f"numpy.{name}" for name in ("uint64", "uint32", "uint16", "uint8", "bool_", "str_", "object_")),
    }
)
MODEL_GLOBALS = frozenset(
    {
        "flight_delay.artifact.FlightDelayModel",
        "flight_delay.features.FeatureContract",
        "lightgbm.basic.Booster",
        "lightgbm.sklearn.LGBMRegressor",
        # Where scikit-learn defines its classes: mostly private modules (see compat/sklearn_internals.py).
        *sklearn_internals.PICKLED_CLASSES,
    }
)
# Module aliases: protocol 0-2 pickles name builtins the Python 2 way; numpy 1.x wrote numpy.core.
MODULE_ALIASES = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    numpy_internals.NUMPY_1_CORE: numpy_internals.NUMPY_CORE,
}
# Classes holding callables they call at prediction time: these attributes must be None.
NO_CALLABLES = {sklearn_internals.FUNCTION_TRANSFORMER: ("func", "inverse_func")}


class ArrayBudget:
    """The bytes the numpy arrays of one file may still take: bounded across the file, not per array."""

    def __init__(self, file_bytes: int) -> None:
        self.limit = ARRAY_BYTES_FLOOR + ARRAY_BYTES_PER_FILE_BYTE * file_bytes
        self.left = self.limit

    def spend(self, shape: Any, dtype: np.dtype) -> tuple[int, ...]:
        """Returns shape as a tuple of ints once its bytes fit what is left; refuses it otherwise."""
        dims = _checked_shape(shape)
        needed = math.prod(dims) * dtype.itemsize
        if needed > self.left:
            raise InvalidArtifact(
                f"The file's numpy arrays would take more than {self.limit} bytes, "
                f"{ARRAY_BYTES_PER_FILE_BYTE} per byte of the file: too large to be a model's."
            )
        self.left -= needed
        return dims


def _checked_shape(shape: Any) -> tuple[int, ...]:
    """Returns shape as a tuple of ints, refusing anything else and negative sizes."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise InvalidArtifact(f"A numpy array in the file has an invalid shape {shape!r:.80}.")
    return dims


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """numpy.dtype as pickles call it: a plain type code, never a subarray or structured layout."""
    if not isinstance(spec, str):
        raise InvalidArtifact("A numpy dtype in the file is not a plain type code; refused.")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.subdtype is not None or dtype.fields is not None:
        raise InvalidArtifact("A numpy dtype in the file has a subarray or fields; refused.")
    return dtype


def _reconstruct(budget: ArrayBudget, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstructor, limited to plain ndarrays within the file's array budget."""
    if not (isinstance(subtype, functools.partial) and subtype.func is _ndarray):  # "numpy.ndarray"
        raise InvalidArtifact("Only plain numpy arrays may be rebuilt from the file.")
    dtype = _plain_dtype(dtype)
    return np.ndarray(budget.spend(shape, dtype), dtype=dtype)


def _frombuffer(budget: ArrayBudget, buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's out-of-band array reconstructor, for non-object dtypes only."""
    dtype = _plain_dtype(dtype)
    if dtype.hasobject or not isinstance(buffer, bytes | bytearray | pickle.PickleBuffer):
        raise InvalidArtifact("A numpy buffer in the file is not plain data.")
    if order not in ("C", "F"):
        raise InvalidArtifact("A numpy buffer in the file has an invalid memory order.")
    return np.frombuffer(buffer, dtype=dtype).reshape(budget.spend(shape, dtype), order=order)


def _scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's scalar reconstructor, checking the payload has exactly the dtype's size."""
    dtype = _plain_dtype(dtype)
    if dtype.hasobject:
        return data
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise InvalidArtifact("A numpy scalar in the file has the wrong size.")
    return np.frombuffer(data, dtype=dtype)[0]


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """How protocol 2 pickles bytes: only the latin-1 round trip is allowed."""
    if not isinstance(text, str) or encoding != "latin1":
        raise InvalidArtifact("The file encodes bytes in an unexpected way.")
    return text.encode("latin1")


def _ndarray(budget: ArrayBudget, shape: Any, dtype: Any = float, *args: Any) -> np.ndarray:
    """The ndarray constructor as a reconstructor: fresh arrays within the file's budget, no buffers."""
    if args:
        raise InvalidArtifact("A numpy array in the file is built over a foreign buffer.")
    dtype = _plain_dtype(dtype)
    return np.ndarray(budget.spend(shape, dtype), dtype=dtype)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg's protocol 0/1 object reconstructor: a vetted class made by object or a builtin type."""
    if not (isinstance(cls, type) and isinstance(base, type)) or base.__module__ != "builtins":
        raise InvalidArtifact("The file rebuilds an object from something that is not a plain class.")
    return python_internals.reconstruct_object(cls, base, state)


def _plain_dtype(dtype: Any) -> np.dtype:
    """A dtype argument as numpy reads it, refused if it has a subarray or fields."""
    if isinstance(dtype, np.dtype):
        plain = dtype
    elif isinstance(dtype, str | bytes | type):
        plain = np.dtype(dtype)
    else:
        raise InvalidArtifact("A numpy array in the file has an invalid dtype.")
    if plain.subdtype is not None or plain.fields is not None:
        raise InvalidArtifact("A numpy dtype in the file has a subarray or fields; refused.")
    return plain


# Callables that allocate from their arguments are replaced by bounded equivalents (the private names
# pickles give them come from compat/numpy_internals.py and compat/python_internals.py); those taking
# the file's ArrayBudget get it first.
GUARDED_GLOBALS: dict[str, Callable[..., Any]] = {
    numpy_internals.ARRAY_RECONSTRUCTOR: _reconstruct,
    numpy_internals.SCALAR_RECONSTRUCTOR: _scalar,
    numpy_internals.BUFFER_RECONSTRUCTOR: _frombuffer,
    python_internals.CODECS_ENCODE: _codecs_encode,
    "numpy.ndarray": _ndarray,
    "numpy.dtype": _dtype,
    python_internals.COPYREG_RECONSTRUCTOR: _reconstructor,
}
BUDGETED = frozenset({_reconstruct, _frombuffer, _ndarray})
ALLOWED_GLOBALS = DATA_GLOBALS | MODEL_GLOBALS | GUARDED_GLOBALS.keys()


def canonical_name(module: str, name: str) -> str:
    """Spells a global the way the allowlist does (Python 2 and numpy 1.x aliases resolved)."""
    for old, new in MODULE_ALIASES.items():
        if module == old or module.startswith(old + "."):
            module = new + module[len(old) :]
    return f"{module}.{name}"


def scan_globals(data: bytes) -> set[str]:
    """Lists the globals a pickle references, reading its opcodes without building anything.

    STACK_GLOBAL takes its module and name from the stack; they are accepted only when the two
    preceding pushes are strings (literal or memoised), which is how every pickler writes them.
    """
    found: set[str] = set()
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # the values of the latest pushes, strings or None
    end = -1
    try:
        for count, (opcode, arg, position) in enumerate(pickletools.genops(io.BytesIO(data)), 1):
            end = position
            if count > MAX_OPCODES:
                raise InvalidArtifact("The file has too many pickle operations to be a model.")
            _follow_opcode(opcode, arg, found, memo, pushed)
    except InvalidArtifact:
        raise
    except Exception as exc:  # genops raises ValueError and friends on malformed or truncated input
        raise InvalidArtifact(f"The upload is not a readable pickle: {exc}") from exc
    if end + 1 != len(data):  # where the STOP opcode is; anything after it is smuggled, not model
        raise InvalidArtifact(f"The file has {len(data) - end - 1} bytes after the end of its pickle.")
    return found


def _follow_opcode(
    opcode: pickletools.OpcodeInfo, arg: Any, found: set[str], memo: dict[int, Any], pushed: list[Any]
) -> None:
    """Reads one opcode for scan_globals: adds the global it names, tracks the strings it pushes."""
    name = opcode.name
    if name in ("GLOBAL", "INST"):
        found.add(canonical_name(*arg.split(" ", 1)))
        pushed.append(None)
    elif name == "STACK_GLOBAL":
        module, attr = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
        if not isinstance(module, str) or not isinstance(attr, str):
            raise InvalidArtifact("The file builds a global reference dynamically; refused.")
        found.add(canonical_name(module, attr))
        pushed.append(None)
    elif name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
        memo[len(memo) if name == "MEMOIZE" else arg] = pushed[-1] if pushed else None
    elif name in ("GET", "BINGET", "LONG_BINGET"):
        pushed.append(memo.get(arg))
    elif name in ("FRAME", "PROTO", "STOP"):
        return  # framing, protocol and the end: no value to track
    else:
        pushed.append(arg if isinstance(arg, str) and opcode.stack_after else None)
    del pushed[:-2]


def refused_globals(data: bytes) -> list[str]:
    """Names the globals of a pickle that are not on the allowlist."""
    return sorted(scan_globals(data) - ALLOWED_GLOBALS)


class RestrictedUnpickler(python_internals.HookedUnpickler):
    """Resolves only allowlisted globals, calls only data reconstructors, vets states before BUILD."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.opcodes = 0
        budget = ArrayBudget(len(data))
        self.guards = {
            name: functools.partial(guard, budget) if guard in BUDGETED else guard
            for name, guard in GUARDED_GLOBALS.items()
        }
        self.callables = {*self.guards.values(), *map(_resolve, CALLABLE_DATA_GLOBALS)}
        self.budget = budget

    def find_class(self, module: str, name: str) -> Any:
        """Returns the allowlisted object, or the bounded stand-in, for a global reference."""
        qualified = canonical_name(module, name)
        if qualified in self.guards:
            return self.guards[qualified]
        if qualified not in ALLOWED_GLOBALS:
            raise InvalidArtifact(f"The file references {qualified}, which is not allowed in a model.")
        return _resolve(qualified)

    def on_opcode(self) -> None:
        """Counts opcodes, so that a file cannot make the unpickler work without end."""
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise InvalidArtifact("The file has too many pickle operations to be a model.")

    def on_call(self, func: Any, args: Any) -> None:
        """Lets the file call data reconstructors only: a model class is built, never called."""
        try:
            allowed = func in self.callables
        except TypeError:  # unhashable: not one of ours
            allowed = False
        if not allowed:
            raise InvalidArtifact(f"The file calls {_describe(func)}, which a model never needs; refused.")

    def on_build(self, target: Any, state: Any) -> None:
        """Checks a state before it is applied: numpy arrays and dtypes, boosters, callables held."""
        if isinstance(target, np.dtype):
            if state != target.__reduce__()[2]:
                raise InvalidArtifact("A numpy dtype in the file has an unusual state; refused.")
        elif isinstance(target, np.ndarray):
            _check_array_state(state, self.budget)
        else:
            _check_object_state(target, state)


def _resolve(qualified: str) -> Any:
    """Imports module.name directly (not through pickle's Python 2 name mapping): the name checked is used."""
    module_name, attribute = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), attribute)


def _describe(func: Any) -> str:
    """Names a callable the file tried to call."""
    inner = getattr(func, "func", func)
    return f"{getattr(inner, '__module__', '?')}.{getattr(inner, '__qualname__', type(inner).__name__)}"


def _check_array_state(state: Any, budget: ArrayBudget) -> None:
    """Checks an ndarray state (version, shape, dtype, fortran, data) is consistent and within budget."""
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)):
        raise InvalidArtifact("A numpy array in the file has a malformed state.")
    _version, shape, dtype, _fortran, payload = state
    dtype = _plain_dtype(dtype)
    size = math.prod(_checked_shape(shape))
    if dtype.hasobject:
        consistent = isinstance(payload, list) and len(payload) == size and dtype == np.dtype(object)
    else:
        consistent = isinstance(payload, bytes | bytearray) and len(payload) == size * dtype.itemsize
    if not consistent:
        raise InvalidArtifact("A numpy array in the file does not hold the data its shape promises.")
    budget.spend(shape, dtype)


def _check_object_state(target: Any, state: Any) -> None:
    """A Booster's state must carry a text model; a FunctionTransformer's may hold no function."""
    kind = type(target)
    qualified = f"{kind.__module__}.{kind.__qualname__}"
    if qualified == "lightgbm.basic.Booster":
        model = _booster_model(state)
        if not (isinstance(model, str) and model.startswith(LIGHTGBM_TEXT_PREFIX)):
            raise InvalidArtifact("A lightgbm Booster in the file holds no LightGBM model; refused.")
    for name in NO_CALLABLES.get(qualified, ()):
        if not isinstance(state, dict) or state.get(name) is not None:
            raise InvalidArtifact(
                f"A {kind.__name__} in the file holds a function as {name}; only None is allowed.",
                {"refused_state": [f"{qualified}.{name}"]},
            )


def _booster_model(state: Any) -> Any:
    """The text model a Booster's state holds, read as Booster.__setstate__ reads it."""
    if not isinstance(state, dict):
        return None
    first, second = lightgbm_internals.BOOSTER_STATE_MODEL_KEYS
    return state.get(first, state.get(second))


def restricted_loads(data: bytes) -> Any:
    """Unpickles data, refusing anything beyond model data; raises InvalidArtifact with the reason."""
    refused = refused_globals(data)
    if refused:
        raise InvalidArtifact(
            f"The file references {', '.join(refused[:10])}, which {'is' if len(refused) == 1 else 'are'} "
            "not allowed in a model; nothing was run.",
            {"refused_globals": refused[:50]},
        )
    try:
        return RestrictedUnpickler(data).load()
    except (InvalidArtifact, MemoryError):  # a memory limit is the sandbox's to report
        raise
    except RecursionError as exc:
        raise InvalidArtifact("The file nests too deeply to be a model.") from exc
    except Exception as exc:  # truncated data, bad states, errors of the allowlisted classes
        raise InvalidArtifact(f"The upload could not be unpickled: {type(exc).__name__}: {exc}") from exc
