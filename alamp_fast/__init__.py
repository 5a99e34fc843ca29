"""alamp_fast: fast, exact active-learning acquisition.

The functional API (numpy in, numpy out; torch tensors, CuPy arrays and dask arrays are
dispatched to their backends by one device rule, see :mod:`alamp_fast._backend`):

- uncertainty: :func:`margin`, :func:`top2_margin`, :func:`entropy`, :func:`least_confidence`
- :func:`alamp_score`: the shift from certainty at iteration k-1 to uncertainty at k
- selection: :func:`select_top`, :func:`diversify` (Algorithm 1 of the paper)
- core-set: :func:`kcenter_greedy`
- :func:`badge`: BADGE (k-means++ seeding over last-layer gradient embeddings, never built)
- the paper's AL protocol: :func:`simulate` (imported on first use)

Importing the package needs neither CUDA, torch nor dask. With ``ALAMP_FAST_CUDA=emulate`` the
GPU paths run on the CPU in the CUDA emulator (:mod:`alamp_fast.cuda.emulate`).
"""

import os as _os

from alamp_fast._backend import KERNELS as _KERNELS
from alamp_fast.alamp import alamp_score as alamp_score
from alamp_fast.badge import badge
from alamp_fast.coreset import KCenterState
from alamp_fast.coreset import kcenter_greedy as kcenter_greedy
from alamp_fast.selection import diversify as diversify
from alamp_fast.selection import select_top as select_top
from alamp_fast.uncertainty import entropy as entropy
from alamp_fast.uncertainty import least_confidence as least_confidence
from alamp_fast.uncertainty import margin as margin
from alamp_fast.uncertainty import top2_margin as top2_margin

if _os.environ.get("ALAMP_FAST_CUDA", "").strip().lower() == "emulate":
    # `import cupy` gives the emulator's CuPy from now on (none of the above imports it)
    from alamp_fast.cuda.emulate import install as _install_emulator

    _install_emulator()


try:  # one source of truth: the version pyproject.toml gives the installed distribution
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("alamp_fast")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"


def __getattr__(name):
    # the AL protocol imports scikit-learn: loaded on first use, not with the kernels
    if name == "simulate":
        from alamp_fast.al.protocol import simulate

        return simulate
    raise AttributeError(f"module 'alamp_fast' has no attribute {name!r}")


# the public kernels come from the one list (alamp_fast._backend.KERNELS, which alamp_fast.cuda,
# the dispatcher and the tests read too); tests/kernels/test_dispatch.py checks each is imported
# above
__all__ = [*_KERNELS, "KCenterState", "badge", "simulate", "__version__"]
