"""Array backends of the SVM solver: numpy (CPU) and torch (CPU or CUDA).

The solver in :mod:`alamp_fast.svm._solver` is written once against the small namespace below;
:func:`get_backend` picks the twin from the estimator's ``device`` once per ``fit`` or
``predict`` call, by the device rule of :mod:`alamp_fast._backend` (the one every entry point
uses). The twins differ only where numpy and torch spell things differently
(``axis``/``dim``, ``keepdims``/``keepdim``, eigensolver, stacked solves, host transfers).

Importing this module does not import torch: :class:`TorchBackend` imports it when built.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from alamp_fast._backend import device_error, parse_device

# active-set systems at least this large are spread over a thread pool (below, the pool's
# overhead would dominate)
_THREADED_SOLVE_MIN = 96
# eigenproblems smaller than this run on one BLAS thread
_THREADED_EIGH_MIN = 2048


@functools.lru_cache(maxsize=1)
def _solve_pool():
    """A thread pool and a BLAS thread controller, made once (inspecting the loaded BLAS
    libraries takes milliseconds)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import ThreadpoolController

    return ThreadPoolExecutor(os.cpu_count() or 1), ThreadpoolController()


class NumpyBackend:
    """numpy on the host; the eigensolver is LAPACK's divide and conquer (``syevd``)."""

    name = "numpy"
    device = "cpu"

    def asarray(self, x, dtype):
        return np.ascontiguousarray(x, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def load_rows(self, rows, np_dtype):
        """A chunk of a pool as a checked array of ``np_dtype`` (NaN/Inf raise ValueError)."""
        from sklearn.utils import check_array

        return check_array(rows, dtype=np_dtype)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def ones(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def concat(self, arrays, axis):
        return np.concatenate(arrays, axis=axis)

    def sum(self, a, axis, keepdims=False):
        return a.sum(axis=axis, keepdims=keepdims)

    def amax(self, a, axis, keepdims=False):
        return a.max(axis=axis, keepdims=keepdims)

    def argmax(self, a, axis):
        return a.argmax(axis=axis)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def sqrt(self, a):
        return np.sqrt(a)

    def exp(self, a):
        return np.exp(a)

    def relu_(self, a):
        """In place ``max(a, 0)``; returns ``a``."""
        return np.maximum(a, 0, out=a)

    def take_cols(self, a, idx: np.ndarray):
        # np.take, not a[:, idx]: 4x faster on the solver's (rows, columns) blocks
        return np.take(a, idx, axis=1)

    def index(self, idx: np.ndarray):
        """A host index array in the form this backend indexes with."""
        return idx

    def astype(self, a, dtype):
        return a.astype(dtype, copy=False)

    def eigh(self, a):
        """Eigenvalues ascending and eigenvectors of a symmetric matrix."""
        # the divide-and-conquer driver: 1.1 s against 3.6 s for numpy's default at n=3200
        from scipy.linalg import eigh

        if a.shape[0] >= _THREADED_EIGH_MIN:
            return eigh(a, driver="evd", check_finite=False)
        # OpenBLAS's threads slow small eigenproblems down by 50x on a busy machine
        # (n=900: 0.16 s on one thread, 7.7 s on two with other processes running)
        with _solve_pool()[1].limit(limits=1, user_api="blas"):
            return eigh(a, driver="evd", check_finite=False)

    def solve_active(self, K, rows: np.ndarray, valid: np.ndarray, diag, rhs):
        """Solve ``(K[r, r] + diag(d)) v = b`` for every row of the stacks.

        ``rows`` (host, (n_systems, m)) indexes ``K``; only the ``valid`` prefix of each row is
        used (the rest is padding, solved as 0). Each system is gathered and solved by
        Cholesky (LAPACK ``posv``) on one thread, the systems spread over a thread pool:
        LAPACK's own threads cost more than they bring at a few hundred rows (0.8 ms with one
        thread, 6.6 ms with two at m=256 on a busy machine), and a stacked gather through one
        index array was latency-bound on one core.
        """
        from scipy.linalg import lapack

        posv = lapack.get_lapack_funcs("posv", dtype=K.dtype)
        n_valid = valid.sum(axis=1)
        out = np.zeros(rhs.shape, dtype=rhs.dtype)

        def work(systems):
            for i in systems:
                m = n_valid[i]
                r = rows[i, :m]
                a = K[np.ix_(r, r)]
                a.flat[:: m + 1] += diag[i, :m]
                _, x, info = posv(a, rhs[i, :m], lower=True, overwrite_a=True)
                if info != 0:  # not positive definite in this precision: pivoted LU instead
                    a = K[np.ix_(r, r)]
                    a.flat[:: m + 1] += diag[i, :m]
                    x = np.linalg.solve(a, rhs[i, :m])
                out[i, :m] = x

        pool, controller = _solve_pool()
        n_workers = min(len(rows), os.cpu_count() or 1)
        with controller.limit(limits=1, user_api="blas"):
            if rows.shape[1] < _THREADED_SOLVE_MIN or n_workers < 2:
                work(range(len(rows)))
            else:
                list(pool.map(work, np.array_split(np.arange(len(rows)), n_workers)))
        return out

    def float_dtype(self, np_dtype):
        return np.dtype(np_dtype)

    def top2(self, probs):
        """``(margin, top_class)`` of each row as numpy arrays (ties to the lowest class)."""
        from alamp_fast.uncertainty import top2_margin

        return top2_margin(probs)


class TorchBackend(NumpyBackend):
    """torch on any device (``"cuda"``, ``"cuda:1"``, ``torch.device("cpu")``...)."""

    name = "torch"

    def __init__(self, device):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} needs CUDA, which torch cannot find")

    def asarray(self, x, dtype):
        t = self.torch
        if isinstance(x, t.Tensor):
            return x.to(device=self.device, dtype=dtype)
        arr = np.ascontiguousarray(x)
        if not arr.flags.writeable:
            arr = arr.copy()  # torch.from_numpy refuses read-only memory (memmaps, views)
        return t.from_numpy(arr).to(device=self.device, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def load_rows(self, rows, np_dtype):
        # the finiteness check runs on the device: on the host it would cost a second pass
        # over every chunk of the pool
        arr = np.asarray(rows)
        if arr.dtype.kind not in "fiu":
            return self.asarray(super().load_rows(rows, np_dtype), self.float_dtype(np_dtype))
        out = self.asarray(arr, self.float_dtype(np_dtype))
        if not bool(self.torch.isfinite(out).all()):
            raise ValueError("Input X contains NaN or infinity.")
        return out

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=dtype, device=self.device)

    def ones(self, shape, dtype):
        return self.torch.ones(shape, dtype=dtype, device=self.device)

    def concat(self, arrays, axis):
        return self.torch.cat(arrays, dim=axis)

    def sum(self, a, axis, keepdims=False):
        return a.sum(dim=axis, keepdim=keepdims)

    def amax(self, a, axis, keepdims=False):
        return a.amax(dim=axis, keepdim=keepdims)

    def argmax(self, a, axis):
        # torch documents that argmax returns the first maximal index, as numpy does
        return a.argmax(dim=axis)

    def where(self, cond, a, b):
        t = self.torch
        if not isinstance(a, t.Tensor):
            a = t.as_tensor(a, dtype=b.dtype, device=self.device)
        if not isinstance(b, t.Tensor):
            b = t.as_tensor(b, dtype=a.dtype, device=self.device)
        return t.where(cond, a, b)

    def maximum(self, a, b):
        if not isinstance(b, self.torch.Tensor):
            return a.clamp(min=b)
        return self.torch.maximum(a, b)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def exp(self, a):
        return self.torch.exp(a)

    def relu_(self, a):
        return a.clamp_(min=0)

    def take_cols(self, a, idx: np.ndarray):
        return a[:, self.index(idx)]

    def index(self, idx: np.ndarray):
        # a copy: broadcast views are read-only, which torch.as_tensor warns about
        return self.torch.as_tensor(np.array(idx), device=self.device)

    def astype(self, a, dtype):
        return a.to(dtype)

    def eigh(self, a):
        return self.torch.linalg.eigh(a)

    def solve_active(self, K, rows: np.ndarray, valid: np.ndarray, diag, rhs):
        # stacked: one gather through a flat index, one batched solve
        n1 = K.shape[0]
        idx = self.index(rows[:, :, None] * n1 + rows[:, None, :])
        a = K.reshape(-1)[idx]
        a.diagonal(dim1=-2, dim2=-1).add_(diag)
        return self.torch.linalg.solve(a, rhs)

    def float_dtype(self, np_dtype):
        t = self.torch
        return {np.dtype(np.float32): t.float32, np.dtype(np.float64): t.float64}[
            np.dtype(np_dtype)
        ]

    def top2(self, probs):
        # on the device: argmax (first maximal index), then the max of the row with it masked
        t = self.torch
        top = probs.argmax(dim=1)
        first = probs.gather(1, top[:, None])[:, 0]
        rest = probs.scatter(1, top[:, None], -t.inf)
        margin = first - rest.amax(dim=1)
        return self.to_numpy(margin), self.to_numpy(top).astype(np.int64)


def get_backend(device):
    """The backend for an estimator's ``device``, parsed by the one device rule
    (:func:`alamp_fast._backend.parse_device`: bad strings raise ``ValueError``, other types
    ``TypeError``, both naming the value).

    ``"cpu"`` (the default) is numpy. ``"cuda"``, ``"cuda:N"`` and any ``torch.device``
    (``torch.device("cpu")`` included, to run the torch path on the host) are torch.
    """
    dev = parse_device(device, "SVM", any_torch_device=True)
    if dev is None:
        raise device_error("SVM", None, TypeError)
    if dev.kind == "cpu" and not dev.torch:
        return NumpyBackend()
    return _torch_backend(device)


def _torch_backend(device):
    try:
        return TorchBackend(device)
    except ImportError as exc:
        raise ImportError(
            f"device={device!r} needs torch (pip install 'alamp_fast[torch]'): {exc}"
        ) from exc
