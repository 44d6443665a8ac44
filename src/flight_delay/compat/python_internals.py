"""CPython's private pickle machinery, which the allowlisting unpickler builds on (serving/safe_pickle.py).

What is used:
- `pickle._Unpickler`, the pure-Python unpickler: subclassed (`HookedUnpickler`) for its `dispatch`
  table (opcode byte to handler; copied, every handler wrapped to call `on_opcode` first), its
  `load_build` and `load_reduce` handlers and its `_instantiate` helper (the OBJ and INST opcodes'
  call), overridden to show what they are about to apply or call, read from its `stack` (BUILD's
  target and state, REDUCE's callable and arguments are its last two items); and its `memo`, a dict
  (the C unpickler's memo is an array grown to the largest index a file names);
- `copyreg._reconstructor(cls, base, state)`, how protocols 0 and 1 rebuild plain objects, called
  after the class checks; and the names pickles give it and `_codecs.encode` (how protocol 2 writes
  bytes), which the allowlist must spell exactly.

Why no public API does it: `pickle.Unpickler` is the C one, whose only hook is `find_class`; it
cannot count opcodes, check a state before BUILD, refuse a call before REDUCE makes it, or bound its
memo. A pickle names whatever the pickler wrote.

What breaks if it changes: the unpickler fails to build or to load any pickled model (uploads are
refused with "could not be unpickled"), or stops checking what it checked; requires-python pins the
minor version, and tests/test_compat.py checks each piece against the running interpreter.
"""

from __future__ import annotations

import copyreg
import pickle
from collections.abc import Callable
from typing import Any

PurePythonUnpickler = pickle._Unpickler
# The names pickles give these (protocol 2 bytes; protocol 0/1 plain objects).
CODECS_ENCODE = "_codecs.encode"
COPYREG_RECONSTRUCTOR = "copyreg._reconstructor"


def reconstruct_object(cls: type, base: type, state: Any) -> Any:
    """copyreg's protocol 0/1 reconstructor: a `cls` object made by `base`, with `state` if any."""
    return copyreg._reconstructor(cls, base, state)


class HookedUnpickler(PurePythonUnpickler):  # its memo is a dict
    """The pure-Python unpickler, calling a hook before each opcode, each call it makes and each BUILD.

    Subclasses override `on_opcode`, `on_call` and `on_build`; a hook that raises stops the load
    before the opcode runs, the call is made or the state is applied.
    """

    def on_opcode(self) -> None:
        """Runs before every opcode."""

    def on_call(self, func: Any, args: Any) -> None:
        """Runs before REDUCE, OBJ or INST calls `func(*args)`."""

    def on_build(self, target: Any, state: Any) -> None:
        """Runs before BUILD applies `state` to `target`."""

    def load_build(self) -> None:
        """BUILD: shows the target and state to on_build, then applies the state as pickle does."""
        self.on_build(self.stack[-2], self.stack[-1])
        super().load_build()

    def load_reduce(self) -> None:
        """REDUCE: shows the callable and its arguments to on_call, then calls it as pickle does."""
        self.on_call(self.stack[-2], self.stack[-1])
        super().load_reduce()

    def _instantiate(self, klass: Any, args: Any) -> None:
        """OBJ and INST: shows the class and its arguments to on_call, then builds as pickle does."""
        self.on_call(klass, tuple(args))
        super()._instantiate(klass, args)


def _before_each_opcode(handler: Callable[[HookedUnpickler], None]) -> Callable[[HookedUnpickler], None]:
    """Wraps an opcode handler so that on_opcode runs first."""

    def hooked(self: HookedUnpickler) -> None:
        self.on_opcode()
        handler(self)

    return hooked


_HANDLERS = {
    **PurePythonUnpickler.dispatch,
    pickle.BUILD[0]: HookedUnpickler.load_build,
    pickle.REDUCE[0]: HookedUnpickler.load_reduce,
}
HookedUnpickler.dispatch = {opcode: _before_each_opcode(h) for opcode, h in _HANDLERS.items()}
