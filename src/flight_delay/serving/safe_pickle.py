"""An unpickler that can only build model data: exact allowlisted globals, bounded, checked states.

Pickle is a small stack machine whose GLOBAL and REDUCE opcodes import and call anything. Blocklists
(picklescan, fickling) have been bypassed again and again, so this module does the opposite:

1. `scan_globals` reads the opcodes without running them and lists every global the file names; a
   name that is not in ALLOWED_GLOBALS, or a reference built in a way that cannot be read statically,
   refuses the file before anything is built.
2. `restricted_loads` then unpickles with the pure-Python unpickler (its memo is a dict, so a huge
   memo index allocates nothing), resolving only allowlisted names, counting opcodes, and checking
   the state of numpy arrays and dtypes before numpy sees it (numpy's own `__setstate__` can crash
   the process on a forged object-array state).

What is allowlisted are classes and data reconstructors, never functions that import, evaluate,
read files or resolve names. Callables that allocate from their arguments are wrapped with bounds.
"""

from __future__ import annotations

import importlib
import io
import math
import pickle
import pickletools
from collections.abc import Callable
from typing import Any

import numpy as np

from flight_delay.compat import numpy_internals, python_internals, sklearn_internals
from flight_delay.errors import InvalidArtifact

MAX_OPCODES = 500_000  # real artifacts need a few thousand
MAX_ARRAY_ELEMENTS = 50_000_000

# Exact "module.name" references that real artifacts need (recorded from the project's artifact, bare
# LightGBM models and scikit-learn pipelines pickled with protocols 0-5), nothing broader.
DATA_GLOBALS = frozenset(
    {
        "builtins.object",
        "builtins.slice",
        "builtins.set",
        "builtins.frozenset",
        "collections.OrderedDict",
        "collections.defaultdict",
        "numpy.dtype",
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


def _bounded_shape(shape: Any) -> tuple[int, ...]:
    """Returns shape as a tuple of ints, refusing negative sizes and arrays too large to be real."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple) or not all(isinstance(d, int) and d >= 0 for d in dims):
        raise InvalidArtifact(f"A numpy array in the file has an invalid shape {shape!r:.80}.")
    if math.prod(dims) > MAX_ARRAY_ELEMENTS:
        raise InvalidArtifact(f"A numpy array in the file is too large ({shape!r:.80}).")
    return dims


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array reconstructor, limited to plain ndarrays of a bounded shape."""
    if subtype is not _ndarray:
        raise InvalidArtifact("Only plain numpy arrays may be rebuilt from the file.")
    return np.ndarray(_bounded_shape(shape), dtype=np.dtype(dtype))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's out-of-band array reconstructor, for non-object dtypes only."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(buffer, bytes | bytearray | pickle.PickleBuffer):
        raise InvalidArtifact("A numpy buffer in the file is not plain data.")
    if order not in ("C", "F"):
        raise InvalidArtifact("A numpy buffer in the file has an invalid memory order.")
    return np.frombuffer(buffer, dtype=dtype).reshape(_bounded_shape(shape), order=order)


def _scalar(dtype: Any, data: Any = None) -> Any:
    """numpy's scalar reconstructor, checking the payload has exactly the dtype's size."""
    dtype = np.dtype(dtype)
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


def _ndarray(shape: Any, dtype: Any = float, *args: Any) -> np.ndarray:
    """The ndarray constructor as a reconstructor: fresh arrays of a bounded shape, no buffers."""
    if args:
        raise InvalidArtifact("A numpy array in the file is built over a foreign buffer.")
    return np.ndarray(_bounded_shape(shape), dtype=np.dtype(dtype))


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg's protocol 0/1 object reconstructor, for classes only (which the allowlist vetted)."""
    if not (isinstance(cls, type) and isinstance(base, type)):
        raise InvalidArtifact("The file rebuilds an object from something that is not a class.")
    return python_internals.reconstruct_object(cls, base, state)


# Callables that allocate from their arguments are replaced by bounded equivalents (the private names
# pickles give them come from compat/numpy_internals.py and compat/python_internals.py).
GUARDED_GLOBALS: dict[str, Callable[..., Any]] = {
    numpy_internals.ARRAY_RECONSTRUCTOR: _reconstruct,
    numpy_internals.SCALAR_RECONSTRUCTOR: _scalar,
    numpy_internals.BUFFER_RECONSTRUCTOR: _frombuffer,
    python_internals.CODECS_ENCODE: _codecs_encode,
    "numpy.ndarray": _ndarray,
    python_internals.COPYREG_RECONSTRUCTOR: _reconstructor,
}
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


class RestrictedUnpickler(python_internals.PurePythonUnpickler):  # its memo is a dict
    """Resolves only allowlisted globals, counts opcodes and vets numpy states before BUILD."""

    dispatch = dict(python_internals.PurePythonUnpickler.dispatch)

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.opcodes = 0

    def find_class(self, module: str, name: str) -> Any:
        """Returns the allowlisted object, or the bounded stand-in, for a global reference."""
        qualified = canonical_name(module, name)
        if qualified in GUARDED_GLOBALS:
            return GUARDED_GLOBALS[qualified]
        if qualified not in ALLOWED_GLOBALS:
            raise InvalidArtifact(f"The file references {qualified}, which is not allowed in a model.")
        # Resolved directly, not through pickle's Python 2 name mapping, so the name checked is the one used.
        module_name, attribute = qualified.rsplit(".", 1)
        return getattr(importlib.import_module(module_name), attribute)

    def load_build(self) -> None:
        """Checks a numpy state before numpy applies it, then builds as pickle does."""
        _check_numpy_state(self.stack[-2], self.stack[-1])
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def _count_opcodes(handler: Callable[[RestrictedUnpickler], None]) -> Callable[[RestrictedUnpickler], None]:
    """Wraps an opcode handler so that a file cannot make the unpickler work without end."""

    def counted(self: RestrictedUnpickler) -> None:
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise InvalidArtifact("The file has too many pickle operations to be a model.")
        handler(self)

    return counted


RestrictedUnpickler.dispatch = {key: _count_opcodes(h) for key, h in RestrictedUnpickler.dispatch.items()}


def _check_numpy_state(target: Any, state: Any) -> None:
    """Refuses array and dtype states that do not describe exactly the data they carry."""
    if isinstance(target, np.dtype):
        if state != target.__reduce__()[2]:
            raise InvalidArtifact("A numpy dtype in the file has an unusual state; refused.")
    elif isinstance(target, np.ndarray):
        _check_array_state(state)


def _check_array_state(state: Any) -> None:
    """Checks an ndarray state (version, shape, dtype, fortran, data) is consistent and bounded."""
    if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype)):
        raise InvalidArtifact("A numpy array in the file has a malformed state.")
    _version, shape, dtype, _fortran, payload = state
    size = math.prod(_bounded_shape(shape))
    if dtype.hasobject:
        consistent = isinstance(payload, list) and len(payload) == size and dtype == np.dtype(object)
    else:
        consistent = isinstance(payload, bytes | bytearray) and len(payload) == size * dtype.itemsize
    if not consistent or dtype.fields is not None:
        raise InvalidArtifact("A numpy array in the file does not hold the data its shape promises.")


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
    except InvalidArtifact:
        raise
    except RecursionError as exc:
        raise InvalidArtifact("The file nests too deeply to be a model.") from exc
    except Exception as exc:  # truncated data, bad states, errors of the allowlisted classes
        raise InvalidArtifact(f"The upload could not be unpickled: {type(exc).__name__}: {exc}") from exc
