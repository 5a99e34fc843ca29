"""BADGE (Ash et al., ICLR 2020): k-means++ seeding over last-layer gradient embeddings.

The gradient of the cross-entropy loss under the predicted label ``yhat_i = argmax p_i``
with respect to the last layer's weights is the outer product ``g_i = q_i (x) h_i`` with
``q_i = onehot(yhat_i) - p_i`` (C values) and ``h_i`` the penultimate embedding (d values).
BADGE picks a batch by k-means++ seeding over the ``g_i``. They are never built here: the
``(n, C*d)`` matrix is 400 GB at n = 1e6, C = 100, d = 512, while

    <g_i, g_j> = <q_i, q_j> <h_i, h_j>
    ||g_i - g_j||^2 = |q_i|^2 |h_i|^2 + |q_j|^2 |h_j|^2 - 2 <q_i, q_j> <h_i, h_j>

and ``<q_i, q_c> = q_c[yhat_i] - <p_i, q_c>`` needs only the rows of ``probs``. Each pick
costs one pass over ``probs`` and ``embeddings`` (O(n (C + d))) that lowers every
candidate's running squared distance to its nearest center, then one cumulative sum and a
binary search for the D^2 draw. Extra memory is O(n).

Backends: numpy (and torch CPU tensors, viewed zero-copy) run a fused numba pass; torch CUDA
tensors run the same steps as torch operations on their device, CuPy arrays as CuPy
operations (a cuBLAS matrix-vector product per factor, no host synchronisation inside the
loop). Which one runs is the device rule of :mod:`alamp_fast._backend`, the kernels' rule;
results come back in the input's library and on its device.
"""

from __future__ import annotations

import contextlib

import numpy as np
from numba import njit, prange

from alamp_fast import _backend
from alamp_fast._parallel import twins
from alamp_fast._validate import (
    as_float_array,
    as_index_array,
    as_rng,
    check_budget,
    check_finite,
    check_float,
    dtype_name,
    raise_non_finite,
)

__all__ = ["badge"]

# Row block of the one-time float64 norm pass on the GPU: bounds its temporaries to
# 2**14 x (C + d) x 8 bytes (80 MB at C = 100, d = 512) whatever n is.
_GPU_NORM_BLOCK = 1 << 14


# ---------------------------------------------------------------------------------------------
# CPU: numba


# reassoc lets LLVM vectorise the float64 dot products (float32 loads widened), as in
# coreset._sqdist_rows; results differ from a sequential sum only by float64 rounding.
@twins(fastmath={"reassoc", "contract"})
def _grad_norms(P, H, top, out):
    """out[i] = |onehot(top[i]) - P[i]|^2 * |H[i]|^2 = ||g_i||^2 (float64)."""
    C = P.shape[1]
    d = H.shape[1]
    for i in prange(P.shape[0]):
        y = top[i]
        # the top class's term apart: 1 - p summed as p^2 - 2p + 1 cancels for confident rows
        t = 1.0 - np.float64(P[i, y])
        q2 = t * t
        for k in range(y):
            t = np.float64(P[i, k])
            q2 += t * t
        for k in range(y + 1, C):
            t = np.float64(P[i, k])
            q2 += t * t
        h2 = 0.0
        for j in range(d):
            t = np.float64(H[i, j])
            h2 += t * t
        out[i] = q2 * h2


@njit(cache=True)
def _same_row(P, H, i, c):
    """Rows i and c of both inputs hold the same values (so g_i == g_c exactly)."""
    for k in range(P.shape[1]):
        if P[i, k] != P[c, k]:
            return False
    for j in range(H.shape[1]):
        if H[i, j] != H[c, j]:
            return False
    return True


@twins(fastmath={"reassoc", "contract"})
def _badge_step(P, H, top, w, qc, hc, wc, c, min_d2):
    """min_d2[i] = min(min_d2[i], ||g_i - g_c||^2) for rows with min_d2[i] > 0.

    Rows at 0 (excluded, chosen, or at distance 0 already) cannot move and are skipped.
    A copy of the center row ``c`` gets exactly 0: the factorised distance leaves a rounding
    residue (~1e-17) there that would give it a D^2 weight.
    """
    C = P.shape[1]
    d = H.shape[1]
    for i in prange(P.shape[0]):
        m = min_d2[i]
        if m <= 0.0:
            continue
        s = 0.0
        for k in range(C):
            s += np.float64(P[i, k]) * qc[k]
        qq = qc[top[i]] - s  # <q_i, q_c> with q_i = onehot(top[i]) - P[i]
        t = 0.0
        for j in range(d):
            t += np.float64(H[i, j]) * hc[j]
        dist = w[i] + wc - 2.0 * qq * t
        if dist <= 1e-9 * (w[i] + wc) and _same_row(P, H, i, c):
            dist = 0.0
        if dist < m:
            # cancellation can leave -1e-16 for a row equal to the center
            min_d2[i] = max(dist, 0.0)


def _badge_cpu(P, H, taken, b, uniforms):
    """The picks, in order, for C-contiguous float32/64 ``P`` and ``H`` (see :func:`badge`)."""
    n = P.shape[0]
    work = n * (P.shape[1] + H.shape[1])
    top = np.argmax(P, axis=1)  # the predicted label; ties to the lowest class
    w = np.empty(n)
    _grad_norms(P, H, top, w, work=work)
    chosen = np.empty(b, dtype=np.int64)
    # the first center is the largest gradient norm, as in the authors' code
    pick = int(np.argmax(np.where(taken, -1.0, w)))
    min_d2 = np.where(taken, 0.0, np.inf)
    cum = np.empty(n)
    for step in range(b):
        chosen[step] = pick
        taken[pick] = True
        min_d2[pick] = 0.0
        if step + 1 == b:
            break
        qc = -P[pick].astype(np.float64)
        qc[top[pick]] += 1.0
        hc = H[pick].astype(np.float64)
        _badge_step(P, H, top, w, qc, hc, w[pick], pick, min_d2, work=work)
        np.cumsum(min_d2, out=cum)
        total = cum[-1]
        if total > 0.0:
            pick = int(np.searchsorted(cum, uniforms[step] * total, side="right"))
        else:  # every candidate sits on a center: take the lowest-index one
            pick = int(np.argmin(taken))
    return chosen


# ---------------------------------------------------------------------------------------------
# GPU: the same steps as array operations, for torch and CuPy (twins differing in a few ops)


class _TorchOps:
    """Array operations of the device loop on torch tensors (any device)."""

    def __init__(self, device):
        import torch

        self.lib = torch
        self.device = torch.device(device)
        self.float64, self.int64, self.uint8 = torch.float64, torch.int64, torch.uint8

    def asarray(self, x, dtype=None):
        return self.lib.as_tensor(x, dtype=dtype, device=self.device)

    def full(self, n, value, dtype):
        return self.lib.full((n,), value, dtype=dtype, device=self.device)

    def wide(self, x):
        return x.to(self.float64)

    def clamp_min_(self, x, low):
        return x.clamp_min_(low)

    def searchsorted_right(self, sorted_x, v):
        return self.lib.searchsorted(sorted_x, v, right=True)

    def argmax_rows(self, x):
        return x.argmax(dim=1)

    def isfinite_all(self, x) -> bool:
        return bool(x.isfinite().all())

    def to_host(self, x) -> np.ndarray:
        return x.cpu().numpy()

    def context(self):
        return contextlib.nullcontext()


class _CupyOps:
    """The same on CuPy arrays (``xp=numpy`` runs it on the host, which the tests use)."""

    def __init__(self, xp, device_id: int = 0):
        self.lib = xp
        self.device_id = device_id
        self.float64, self.int64, self.uint8 = xp.float64, xp.int64, xp.uint8

    def asarray(self, x, dtype=None):
        return self.lib.asarray(x, dtype=dtype)

    def full(self, n, value, dtype):
        return self.lib.full(n, value, dtype=dtype)

    def wide(self, x):
        return x.astype(self.float64)

    def clamp_min_(self, x, low):
        return self.lib.maximum(x, low, out=x)

    def searchsorted_right(self, sorted_x, v):
        return self.lib.searchsorted(sorted_x, v, side="right")

    def argmax_rows(self, x):
        return x.argmax(axis=1)

    def isfinite_all(self, x) -> bool:
        return bool(self.lib.isfinite(x).all())

    def to_host(self, x) -> np.ndarray:
        return x.get() if hasattr(x, "get") else np.asarray(x)

    def context(self):
        if self.lib is np:
            return contextlib.nullcontext()
        return self.lib.cuda.Device(self.device_id)


def _badge_device(ops, P, H, taken, b, uniforms):
    """:func:`_badge_cpu` as array operations: every step stays on the device.

    ``P`` and ``H`` are C-contiguous device arrays of one float dtype; ``taken`` a host bool
    array. The matrix-vector products run in that dtype (cuBLAS), norms, distances and the
    cumulative sum in float64. The next pick stays a one-element device array, so the loop
    only enqueues work (about 20 small launches and two GEMVs per pick) and the host
    synchronises once, when the caller reads the result.
    """
    n = P.shape[0]
    top = ops.argmax_rows(P)
    rows = ops.asarray(np.arange(min(n, _GPU_NORM_BLOCK), dtype=np.int64))
    w = ops.full(n, 0.0, ops.float64)
    for lo in range(0, n, _GPU_NORM_BLOCK):
        hi = min(n, lo + _GPU_NORM_BLOCK)
        q = -ops.wide(P[lo:hi])
        q[rows[: hi - lo], top[lo:hi]] += 1.0
        h = ops.wide(H[lo:hi])
        w[lo:hi] = (q * q).sum(1) * (h * h).sum(1)
    avail = ops.asarray(~taken, dtype=ops.uint8)
    is_avail = avail > 0
    pick = ops.lib.where(is_avail, w, ops.full(n, -1.0, ops.float64)).argmax().reshape(1)
    min_d2 = ops.lib.where(
        is_avail, ops.full(n, np.inf, ops.float64), ops.full(n, 0.0, ops.float64)
    )
    u = ops.asarray(np.asarray(uniforms, dtype=np.float64))
    chosen = ops.full(b, 0, ops.int64)
    for step in range(b):
        chosen[step : step + 1] = pick
        avail[pick] = 0
        min_d2[pick] = 0.0
        if step + 1 == b:
            break
        qc = -P[pick].reshape(-1)
        qc[top[pick]] += 1.0
        qq = ops.wide(qc[top]) - ops.wide(P @ qc)  # <q_i, q_c>, q_i = onehot(top_i) - p_i
        hh = ops.wide(H @ H[pick].reshape(-1))  # <h_i, h_c>
        dist = w + w[pick] - 2.0 * qq * hh
        # a copy of the center has the center's own w, qq and hh: exactly 0, not the residue
        same = (w == w[pick]) & (qq == qq[pick]) & (hh == hh[pick])
        dist = ops.lib.where(same, ops.full(n, 0.0, ops.float64), dist)
        ops.lib.minimum(min_d2, ops.clamp_min_(dist, 0.0), out=min_d2)
        cum = min_d2.cumsum(0)
        nxt = ops.searchsorted_right(cum, u[step : step + 1] * cum[-1:])
        # a total of 0 (every candidate on a center) leaves nxt == n: lowest-index candidate
        pick = ops.lib.where(nxt < n, nxt, avail.argmax().reshape(1))
    return chosen


# ---------------------------------------------------------------------------------------------
# public entry


def _check_shapes(p_shape, h_shape) -> None:
    if len(p_shape) != 2:
        raise ValueError(f"probs must be 2-D (n_samples, n_classes), got shape {tuple(p_shape)}")
    if len(h_shape) != 2:
        raise ValueError(
            f"embeddings must be 2-D (n_samples, n_features), got shape {tuple(h_shape)}"
        )
    if p_shape[1] < 2:
        raise ValueError(f"probs must have at least 2 classes, got shape {tuple(p_shape)}")
    if h_shape[1] < 1:
        raise ValueError(f"embeddings need at least 1 feature, got shape {tuple(h_shape)}")
    if p_shape[0] != h_shape[0]:
        raise ValueError(
            f"probs has {p_shape[0]} rows but embeddings has {h_shape[0]}; one row per sample"
        )


def _taken_mask(exclude, n: int) -> np.ndarray:
    exclude = _backend.to_host(exclude)
    taken = np.zeros(n, dtype=bool)
    taken[as_index_array(exclude, "exclude", n)] = True
    return taken


def _host_inputs(probs, embeddings):
    P = as_float_array(probs, "probs", 2)
    H = as_float_array(embeddings, "embeddings", 2)
    _check_shapes(P.shape, H.shape)
    check_finite(P, "probs")
    check_finite(H, "embeddings")
    _check_non_negative(P)
    # float16 is widened once; the kernels read float32/64
    return (
        P.astype(np.float32) if P.dtype == np.float16 else P,
        H.astype(np.float32) if H.dtype == np.float16 else H,
    )


def _check_non_negative(P) -> None:
    """Probabilities are >= 0: a negative value names its position."""
    neg = P < 0
    if neg.any():
        i, k = np.unravel_index(int(np.argmax(neg)), P.shape)
        raise ValueError(
            f"probs[{i}, {k}] = {float(P[i, k])!r} is negative; badge needs class "
            "probabilities (softmax outputs), not scores"
        )


def _device_inputs(ops, probs, embeddings):
    """Device arrays of one float dtype (float64 if either input is), C-contiguous, checked."""
    P, H = probs, embeddings
    _check_shapes(tuple(P.shape), tuple(H.shape))
    kinds = []
    for name, a in (("probs", P), ("embeddings", H)):
        kind = dtype_name(a.dtype)
        if kind != "bfloat16":  # torch's bfloat16 is widened, as on the CPU path
            check_float(a, name, 2)
        kinds.append(kind)
    wide = ops.float64 if "float64" in kinds else ops.lib.float32
    if isinstance(ops, _CupyOps):
        P, H = (ops.lib.ascontiguousarray(a, dtype=wide) for a in (P, H))
    else:
        P, H = (a.detach().to(wide).contiguous() for a in (P, H))
    for name, a in (("probs", P), ("embeddings", H)):
        # one reduction and one synchronisation per input; the position only on failure
        if not ops.isfinite_all(a):
            raise_non_finite(ops.to_host(a), name)
    if bool((P < 0).any()):
        _check_non_negative(ops.to_host(P))
    return P, H


def _gpu_ops(p: _backend.Plan, probs, embeddings, device):
    """The device ops for a GPU plan and the inputs moved to that device: GPU input in its own
    library, host input in torch if it sees a GPU, else CuPy (the device rule of
    :mod:`alamp_fast._backend`)."""
    lib = _backend.gpu_library("badge", p, device, ("torch-cuda", "cupy"))
    index = p.index or 0
    if lib == "cupy":
        import cupy

        with cupy.cuda.Device(index):
            return _CupyOps(cupy, index), cupy.asarray(probs), cupy.asarray(embeddings)
    import torch

    dev = torch.device("cuda", index)
    return (
        _TorchOps(dev),
        torch.as_tensor(probs, device=dev),
        torch.as_tensor(embeddings, device=dev),
    )


def _run_device(ops, probs, embeddings, b, rng, exclude):
    """Check, draw the uniforms and run :func:`_badge_device`; the picks as a device array."""
    with ops.context():
        P, H = _device_inputs(ops, probs, embeddings)
        taken = _taken_mask(exclude, P.shape[0])
        b = check_budget(b, P.shape[0] - int(taken.sum()), "candidates (rows not excluded)")
        uniforms = rng.random(max(b - 1, 0))
        if b == 0:
            return ops.full(0, 0, ops.int64)
        return _badge_device(ops, P, H, taken, b, uniforms)


def badge(probs, embeddings, b, seed=None, *, exclude=None, device=None):
    """BADGE batch selection: k-means++ seeding over last-layer gradient embeddings.

    Row ``i``'s gradient embedding is ``g_i = (onehot(yhat_i) - p_i) (x) h_i``, the gradient
    of the cross-entropy loss under the predicted label ``yhat_i = argmax p_i`` (ties to the
    lowest class) with respect to a last linear layer fed with ``h_i``. The first pick is the
    candidate with the largest ``||g_i||`` (ties to the lowest index), as in the authors' code;
    each further pick is drawn with probability proportional to its squared distance to the
    nearest pick so far (D^2 sampling): draw ``u`` uniform in [0, 1) from the generator, and
    take the first row whose cumulative sum of squared distances exceeds ``u`` times the total.
    Excluded and chosen rows weigh 0, and so do exact copies of a chosen row (same ``probs``
    and ``embeddings`` values: their distance is exactly 0, not a rounding residue). If every
    remaining candidate is at distance 0 the next pick is the lowest-index candidate (a ``u``
    is drawn all the same), whatever the seed.

    Parameters
    ----------
    probs : (n_samples, n_classes) float16/32/64
        The model's class probabilities (softmax outputs), finite and >= 0 (a negative
        value raises ``ValueError``); ``n_classes >= 2``.
    embeddings : (n_samples, n_features) float16/32/64
        The input of the last linear layer (penultimate features), finite.
    b : int
        Number of rows to pick, ``0 <= b <= n_samples - len(exclude)``.
    seed : None, int or numpy.random.Generator
        Source of the ``b - 1`` uniforms (drawn up front, one per pick after the first).
    exclude : int indices or boolean mask, optional
        Rows never picked (the labeled set). They are not centers either: BADGE clusters the
        unlabeled pool only.
    device : None, "cpu", "cuda[:N]" or a torch.device
        Where to run, by the rule of :mod:`alamp_fast._backend` (the kernels' rule):
        ``"cuda"`` runs host input on the GPU (torch if it sees CUDA, else CuPy) and returns it
        in the input's library on the host. torch CUDA tensors and CuPy arrays run on their
        device without it; with ``device="cpu"`` they raise ``ValueError``.

    Returns
    -------
    (b,) int64 indices in the order picked, in the inputs' array library and on their device
    (numpy for numpy; torch for torch tensors; CuPy for CuPy arrays). ``exclude`` counts as an
    input: a torch ``exclude`` with numpy ``probs`` gives torch picks.

    Notes
    -----
    The ``(n, C*d)`` embedding matrix is never formed: ``||g_i - g_c||^2 = |q_i|^2 |h_i|^2 +
    |q_c|^2 |h_c|^2 - 2 <q_i, q_c> <h_i, h_c>`` with ``q = onehot(yhat) - p``. A pick reads
    ``probs`` and ``embeddings`` once; extra memory is O(n). On the CPU the products are
    accumulated in float64. On the GPU they run in the inputs' precision (cuBLAS; float64 if
    either input is float64) and distances in float64, so float64 inputs give the CPU's picks
    while float32 inputs can differ where rounding moves a draw across a row boundary.

    Examples
    --------
    >>> import numpy as np
    >>> from alamp_fast.badge import badge
    >>> probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4], [0.2, 0.8]])
    >>> emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    >>> badge(probs, emb, 1).tolist()   # the largest gradient norm: row 1
    [1]
    >>> picks = badge(probs, emb, 3, seed=0, exclude=[0])
    >>> len(picks), int(picks[0]), 0 in picks.tolist()
    (3, 1, False)
    """
    p = _backend.plan("badge", (probs, embeddings, exclude), device)
    rng = as_rng(seed)
    if p.library == "torch":  # zero-copy numpy views of CPU tensors
        probs, embeddings = _backend.to_host(probs), _backend.to_host(embeddings)
    if p.on_gpu:
        ops, P, H = _gpu_ops(p, probs, embeddings, device)
        out = _run_device(ops, P, H, b, rng, exclude)
        if p.library in _backend.GPU_LIBRARIES:
            return out
        out = ops.to_host(out)
    else:
        P, H = _host_inputs(probs, embeddings)
        taken = _taken_mask(exclude, P.shape[0])
        b = check_budget(b, P.shape[0] - int(taken.sum()), "candidates (rows not excluded)")
        uniforms = rng.random(max(b - 1, 0))
        out = _badge_cpu(P, H, taken, b, uniforms) if b else np.empty(0, dtype=np.int64)
    return _backend.numpy_to(p.library)(out)
