"""CPython's private pickle machinery, which the allowlisting unpickler builds on (serving/safe_pickle.py).

What is used:
- `pickle._Unpickler`, the pure-Python unpickler: subclassed for its `dispatch` table (opcode byte
  to handler; copied and every handler wrapped to count opcodes), its `load_build` handler
  (overridden to check numpy states before BUILD applies them), its `stack` (the BUILD target and
  state are its last two items) and its `memo`, a dict (the C unpickler's memo is an array grown to
  the largest index a file names);
- `copyreg._reconstructor(cls, base, state)`, how protocols 0 and 1 rebuild plain objects, called
  after the class checks; and the names pickles give it and `_codecs.encode` (how protocol 2 writes
  bytes), which the allowlist must spell exactly.

Why no public API does it: `pickle.Unpickler` is the C one, whose only hook is `find_class`; it
cannot count opcodes, check a state before BUILD, or bound its memo. A pickle names whatever the
pickler wrote.

What breaks if it changes: the unpickler fails to build or to load any pickled model (uploads are
refused with "could not be unpickled"), or stops checking what it checked; requires-python pins the
minor version, and tests/test_compat.py checks each piece against the running interpreter.
"""

from __future__ import annotations

import copyreg
import pickle
from typing import Any

PurePythonUnpickler = pickle._Unpickler
# The names pickles give these (protocol 2 bytes; protocol 0/1 plain objects).
CODECS_ENCODE = "_codecs.encode"
COPYREG_RECONSTRUCTOR = "copyreg._reconstructor"


def reconstruct_object(cls: type, base: type, state: Any) -> Any:
    """copyreg's protocol 0/1 reconstructor: a `cls` object made by `base`, with `state` if any."""
    return copyreg._reconstructor(cls, base, state)
