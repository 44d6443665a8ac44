"""numpy's private reconstructors, as named in pickles of arrays and scalars (serving/safe_pickle.py).

What is used: the names numpy's `__reduce__` writes into a pickle to rebuild an array or a scalar,
and their arguments, which safe_pickle's bounded stand-ins take in their place:
- `numpy._core.multiarray._reconstruct(subtype, shape, dtype)`, then the array's state by BUILD
  (protocols 0-4);
- `numpy._core.numeric._frombuffer(buf, dtype, shape, order)` (protocol 5, out-of-band buffers);
- `numpy._core.multiarray.scalar(dtype, data)` for a numpy scalar;
- `numpy._core`, which numpy 1.x pickles spelled `numpy.core` (the alias safe_pickle resolves).

Why no public API does it: a pickle names whatever numpy's `__reduce__` returns; an allowlisting
unpickler must accept those exact names and check their arguments before numpy allocates anything.

What breaks if it changes: models pickled by a numpy that names another reconstructor are refused
at upload ("references ..., which is not allowed"), and a reconstructor taking other arguments makes
their unpickling fail; nothing unchecked is ever run. tests/test_compat.py pickles arrays and scalars
with the installed numpy and checks the names and arguments.
"""

from __future__ import annotations

ARRAY_RECONSTRUCTOR = "numpy._core.multiarray._reconstruct"
BUFFER_RECONSTRUCTOR = "numpy._core.numeric._frombuffer"
SCALAR_RECONSTRUCTOR = "numpy._core.multiarray.scalar"
# numpy 1.x's name for the module numpy 2 calls numpy._core.
NUMPY_1_CORE, NUMPY_CORE = "numpy.core", "numpy._core"
