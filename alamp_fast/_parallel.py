"""Serial and parallel twins of a numba kernel, chosen by the amount of work.

A ``parallel=True`` kernel pays a thread wake-up on every call (tens of microseconds when the
cores are idle, milliseconds when they are busy with other work), which dominates small inputs:
a 1e4 x 100 top-2 took 16 ms in parallel on a loaded 2-core machine and 0.1 ms serially. Each
kernel is therefore compiled twice from the same source (``prange`` runs as ``range`` in the
serial twin) and :meth:`Twins.pick` takes the parallel one only for large inputs.

Below both, at most :data:`NUMPY_MAX_WORK` elements, the callers that have one take a numpy
route with the same results bit for bit (:func:`numpy_route`): compiling a kernel costs
0.15-0.7 s of CPU per dtype the first time, and most of a fresh install's first
``alamp-fast simulate`` was spent compiling kernels for pools numpy handles in microseconds.
"""

from __future__ import annotations

import types

import numba
from numba import njit

__all__ = ["Twins", "twins", "PARALLEL_MIN_WORK", "NUMPY_MAX_WORK", "numpy_route"]

# elements below which the serial twin wins: a 2**20-element float32 pass is ~0.1 ms of
# memory traffic, a few thread wake-ups on an idle machine (many more on a busy one)
PARALLEL_MIN_WORK = 1 << 20
# elements at or below which a caller with a numpy route takes it (nothing to compile); numpy's
# extra passes over so few elements cost well under a millisecond
NUMPY_MAX_WORK = 1 << 16


def numpy_route(work: int) -> bool:
    """Whether ``work`` elements are few enough for the numpy route (read at each call, so a
    test can set :data:`NUMPY_MAX_WORK` to -1 to run the kernels on small inputs)."""
    return work <= NUMPY_MAX_WORK


class Twins:
    """The serial and parallel builds of one kernel."""

    def __init__(self, fn, **options):
        # distinct qualnames so numba's on-disk cache keeps the two builds apart
        serial_fn = types.FunctionType(
            fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
        )
        serial_fn.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = njit(cache=True, **options)(serial_fn)
        self.parallel = njit(cache=True, parallel=True, **options)(fn)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__

    def pick(self, work: int):
        """The twin to run for ``work`` elements of work."""
        if work >= PARALLEL_MIN_WORK and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial

    def __call__(self, *args, work: int):
        return self.pick(work)(*args)


def twins(**options):
    """Decorator: ``@twins()`` compiles the function as a :class:`Twins` pair."""

    def decorate(fn):
        return Twins(fn, **options)

    return decorate
