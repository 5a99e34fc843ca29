"""BADGE selection: :func:`alamp_fast.badge` against the BADGE authors' design on the CPU.

Providers (one harness, one row each):

``alamp_fast-cpu``
    numpy input: one fused numba pass per pick over ``probs`` and ``embeddings`` (float64
    accumulation), then ``cumsum`` + ``searchsorted`` for the D^2 draw.
``alamp_fast-torch-cuda`` / ``alamp_fast-cupy``
    the same steps as torch / CuPy operations on the GPU (``--gpu``).
``reference-factorised``
    the authors' k-means++ (``init_centers`` of github.com/JordanAsh/badge): a Python loop
    over picks, each computing the distances to the newest center for the whole pool and
    keeping the running minimum, here with the factorised inner product (two float32 BLAS
    GEMVs, ``Q @ q_c`` and ``H @ h_c``) instead of the ``(n, C*d)`` matrix, and the same D^2
    rule and uniforms as ``alamp_fast``, so the picks can be compared.
``authors-loop`` (``--authors``)
    the authors' running-minimum update literally (``for i in range(n): if D2[i] > newD[i]``)
    and ``scipy.stats.rv_discrete`` sampling, on a few picks (per-pick time extrapolated).

Each row records sizes, seconds, milliseconds per pick, bytes of ``probs`` + ``embeddings``
read per pick and the bandwidth that implies, peak memory, and quality: the k-means++
potential (sum over the pool of the squared gradient-embedding distance to the nearest pick)
and how many leading picks equal those of ``alamp_fast``. Sizes:

    python benchmarks/bench_badge.py --quick     # CPU: n=2e4, C=100, d=512, b=100 (seconds)
    python benchmarks/bench_badge.py             # CPU: n=1e5, b=200 (moderate)
    python benchmarks/bench_badge.py --gpu       # GPU: n=1e6, C=100, d=512, b=1000 (the issue's)

CPU runs write ``benchmarks/results/badge_cpu.json``, ``--gpu`` runs
``benchmarks/results/badge_h200.json`` (``--out`` to change). The GPU run also times the CPU
reference on ``--ref-picks`` picks of the same pool and extrapolates it to ``b``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from _harness import Run, load_average

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_pool(n: int, C: int, d: int, seed: int):
    """Softmax probabilities of peaked random logits and non-negative (post-ReLU-like)
    embeddings, float32, generated in blocks (no float64 copy of the pool)."""
    rng = np.random.default_rng(seed)
    P = np.empty((n, C), dtype=np.float32)
    H = np.empty((n, d), dtype=np.float32)
    block = 1 << 16
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        z = rng.standard_normal((hi - lo, C), dtype=np.float32) * 2.5
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        P[lo:hi] = z
        H[lo:hi] = np.abs(rng.standard_normal((hi - lo, d), dtype=np.float32))
    return P, H


def reference_factorised(P, H, b, seed, max_picks=None):
    """The authors' k-means++ loop with factorised distances (see the module docstring).

    Returns the picks (``max_picks`` of them when given: timing a prefix) in order.
    """
    rng = np.random.default_rng(seed)
    uniforms = rng.random(max(b - 1, 0))
    n, C = P.shape
    top = P.argmax(axis=1)
    Q = -P
    Q[np.arange(n), top] += 1  # q_i = onehot(yhat_i) - p_i, float32
    w = np.einsum("ij,ij->i", Q, Q, dtype=np.float64) * np.einsum(
        "ij,ij->i", H, H, dtype=np.float64
    )
    chosen = [int(np.argmax(w))]
    min_d2 = np.full(n, np.inf)
    stop = b if max_picks is None else min(b, max_picks)
    while len(chosen) < stop:
        c = chosen[-1]
        dist = w + w[c] - 2.0 * (Q @ Q[c]).astype(np.float64) * (H @ H[c]).astype(np.float64)
        np.maximum(dist, 0.0, out=dist)
        np.minimum(min_d2, dist, out=min_d2)
        min_d2[chosen] = 0.0
        cum = np.cumsum(min_d2)
        chosen.append(int(np.searchsorted(cum, uniforms[len(chosen) - 1] * cum[-1], "right")))
    return np.asarray(chosen, dtype=np.int64)


def authors_loop(P, H, picks: int, seed: int):
    """The authors' per-point running minimum and ``rv_discrete`` draws, ``picks`` picks."""
    from scipy import stats

    n, C = P.shape
    top = P.argmax(axis=1)
    Q = -P
    Q[np.arange(n), top] += 1
    w = np.einsum("ij,ij->i", Q, Q, dtype=np.float64) * np.einsum(
        "ij,ij->i", H, H, dtype=np.float64
    )
    inds = [int(np.argmax(w))]
    D2 = None
    rs = np.random.RandomState(seed)
    while len(inds) < picks:
        c = inds[-1]
        newD = np.sqrt(np.maximum(w + w[c] - 2.0 * (Q @ Q[c]) * (H @ H[c]), 0.0))
        if D2 is None:
            D2 = newD
        else:
            for i in range(n):  # the authors' update, one point at a time
                if D2[i] > newD[i]:
                    D2[i] = newD[i]
        Ddist = D2**2 / np.sum(D2**2)
        dist = stats.rv_discrete(name="custm", values=(np.arange(n), Ddist), seed=rs)
        ind = int(dist.rvs(size=1)[0])
        while ind in inds:
            ind = int(dist.rvs(size=1)[0])
        inds.append(ind)
    return inds


def potential(P, H, picks) -> float:
    """k-means++ potential: sum over the pool of the squared distance of g_i to its nearest
    pick (factorised, float64, blocked)."""
    n = P.shape[0]
    top = P.argmax(axis=1)
    picks = np.asarray(picks)
    Qc = -P[picks].astype(np.float64)
    Qc[np.arange(picks.size), top[picks]] += 1
    Hc = H[picks].astype(np.float64)
    wc = (Qc * Qc).sum(1) * (Hc * Hc).sum(1)
    total = 0.0
    for lo in range(0, n, 1 << 14):
        hi = min(n, lo + (1 << 14))
        Q = -P[lo:hi].astype(np.float64)
        Q[np.arange(hi - lo), top[lo:hi]] += 1
        Hb = H[lo:hi].astype(np.float64)
        w = (Q * Q).sum(1) * (Hb * Hb).sum(1)
        d = w[:, None] + wc[None, :] - 2 * (Q @ Qc.T) * (Hb @ Hc.T)
        total += float(np.maximum(d, 0).min(axis=1).sum())
    return total


def common_prefix(a, b) -> int:
    a, b = np.asarray(a), np.asarray(b)
    m = min(a.size, b.size)
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if diff.size else m


def row(provider, n, C, d, b, seconds, picks_timed, itemsize, peak, **extra) -> dict:
    per_pick = seconds / max(picks_timed - 1, 1)
    bytes_per_pick = n * (C + d) * itemsize
    return {
        "kernel": "badge",
        "provider": provider,
        "sizes": {"n": n, "C": C, "d": d, "b": b},
        "picks_timed": picks_timed,
        "seconds": seconds,
        "ms_per_pick": 1e3 * per_pick,
        "bytes_read_per_pick": bytes_per_pick,
        "gb_per_s": bytes_per_pick / per_pick / 1e9,
        "peak_memory_bytes": peak,
        **extra,
    }


def run_cpu(n, C, d, b, seed, authors_picks) -> list[dict]:
    from alamp_fast.badge import badge

    P, H = make_pool(n, C, d, seed)
    badge(P[:2000], H[:2000], 5, seed=0)  # compile / load both numba twins outside the timing
    badge(P, H, 2, seed=0)
    rows = []
    t = time.perf_counter()
    ours = badge(P, H, b, seed=seed)
    rows.append(
        row(
            "alamp_fast-cpu",
            n,
            C,
            d,
            b,
            time.perf_counter() - t,
            b,
            4,
            peak_rss_bytes(),
            potential=potential(P, H, ours),
        )
    )
    t = time.perf_counter()
    ref = reference_factorised(P, H, b, seed)
    rows.append(
        row(
            "reference-factorised",
            n,
            C,
            d,
            b,
            time.perf_counter() - t,
            b,
            4,
            peak_rss_bytes(),
            potential=potential(P, H, ref),
            same_leading_picks=common_prefix(ours, ref),
        )
    )
    if authors_picks:
        t = time.perf_counter()
        authors_loop(P, H, authors_picks, seed)
        secs = time.perf_counter() - t
        rows.append(
            row(
                "authors-loop",
                n,
                C,
                d,
                b,
                secs,
                authors_picks,
                4,
                peak_rss_bytes(),
                extrapolated_s=secs / max(authors_picks - 1, 1) * (b - 1),
            )
        )
    return rows


def run_gpu(n, C, d, b, seed, ref_picks) -> tuple[list[dict], dict]:
    import torch

    from alamp_fast.badge import badge

    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs torch with a CUDA device")
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(seed)
    P = torch.softmax(2.5 * torch.randn(n, C, device=dev, generator=gen), dim=1)
    H = torch.randn(n, d, device=dev, generator=gen).abs_()
    badge(P[:4096], H[:4096], 20, seed=0)  # CUDA context, cuBLAS handles, allocator
    torch.cuda.synchronize()
    rows = []
    for rep in range(3):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        torch.cuda.synchronize()
        t = time.perf_counter()
        picks = badge(P, H, b, seed=seed)
        torch.cuda.synchronize()
        secs = time.perf_counter() - t
        rows.append(
            row(
                "alamp_fast-torch-cuda",
                n,
                C,
                d,
                b,
                secs,
                b,
                4,
                torch.cuda.max_memory_allocated() - base,
                repeat=rep,
            )
        )
    picks = picks.cpu().numpy()
    P_host, H_host = P.cpu().numpy(), H.cpu().numpy()
    try:
        import cupy

        import_ok = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a usable CUDA
        import_ok = False
    if import_ok:
        Pc, Hc = cupy.from_dlpack(P), cupy.from_dlpack(H)
        badge(Pc[:4096], Hc[:4096], 20, seed=0)
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        cp_picks = badge(Pc, Hc, b, seed=seed)
        cupy.cuda.Device().synchronize()
        rows.append(
            row(
                "alamp_fast-cupy",
                n,
                C,
                d,
                b,
                time.perf_counter() - t,
                b,
                4,
                None,
                same_leading_picks=common_prefix(picks, cp_picks.get()),
            )
        )
    # the CPU reference on a prefix of the same pool, extrapolated to b picks
    t = time.perf_counter()
    ref = reference_factorised(P_host, H_host, b, seed, max_picks=ref_picks)
    secs = time.perf_counter() - t
    rows.append(
        row(
            "reference-factorised",
            n,
            C,
            d,
            b,
            secs,
            ref_picks,
            4,
            peak_rss_bytes(),
            extrapolated_s=secs / max(ref_picks - 1, 1) * (b - 1),
            same_leading_picks=common_prefix(picks, ref),
        )
    )
    # correctness at float64: the GPU loop against the CPU kernel, same seed
    m = min(n, 100_000)
    P64, H64 = P[:m].double(), H[:m, :64].double()
    gpu64 = badge(P64, H64, 200, seed=seed + 1).cpu().numpy()
    cpu64 = badge(P64.cpu().numpy(), H64.cpu().numpy(), 200, seed=seed + 1)
    check = {
        "float64_check_sizes": {"n": m, "C": C, "d": 64, "b": 200},
        "float64_identical_to_cpu": bool(np.array_equal(gpu64, cpu64)),
        "float64_same_leading_picks": common_prefix(gpu64, cpu64),
    }
    return rows, check


def environment(gpu: bool) -> dict:
    from alamp_fast.bench import environment as cpu_environment

    env = cpu_environment()
    try:
        import torch

        env["versions"]["torch"] = torch.__version__
        if gpu and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = {
                "name": props.name,
                "memory_bytes": props.total_memory,
                "multiprocessors": props.multi_processor_count,
                "cuda": torch.version.cuda,
            }
    except ImportError:
        pass
    return env


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU: n=2e4, b=100")
    parser.add_argument("--gpu", action="store_true", help="the issue's sizes on a CUDA GPU")
    parser.add_argument("--n", type=float, help="pool size (overrides the mode's)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--b", type=int, help="batch size (picks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--authors",
        type=int,
        default=0,
        metavar="PICKS",
        help="also time the authors' per-point loop on PICKS picks",
    )
    parser.add_argument("--ref-picks", type=int, default=20, help="GPU mode: reference picks")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    if args.gpu:
        n, b = int(args.n or 1e6), args.b or 1000
    elif args.quick:
        n, b = int(args.n or 2e4), args.b or 100
    else:
        n, b = int(args.n or 1e5), args.b or 200
    C, d = args.classes, args.dim
    out = args.out or RESULTS / ("badge_h200.json" if args.gpu else "badge_cpu.json")
    harness = Run("badge", own_threads=os.cpu_count() or 1)  # prints the load at start
    doc = {
        "benchmark": "badge",
        **environment(args.gpu),
        "load_average_at_start": list(os.getloadavg()),
        "config": {
            "n": n,
            "C": C,
            "d": d,
            "b": b,
            "dtype": "float32",
            "seed": args.seed,
            "mode": "gpu" if args.gpu else "quick" if args.quick else "moderate",
        },
    }
    if args.gpu:
        rows, check = run_gpu(n, C, d, b, args.seed, args.ref_picks)
        doc["checks"] = check
        ours = min(r["seconds"] for r in rows if r["provider"] == "alamp_fast-torch-cuda")
        ref = next(r for r in rows if r["provider"] == "reference-factorised")
        doc["summary"] = {
            "gpu_seconds": ours,
            "under_10_s": ours < 10,
            "reference_extrapolated_s": ref["extrapolated_s"],
            "speedup_vs_reference": ref["extrapolated_s"] / ours,
        }
    else:
        rows = run_cpu(n, C, d, b, args.seed, args.authors)
        ours = next(r for r in rows if r["provider"] == "alamp_fast-cpu")
        ref = next(r for r in rows if r["provider"] == "reference-factorised")
        doc["summary"] = {
            "alamp_fast_ms_per_pick": ours["ms_per_pick"],
            "reference_ms_per_pick": ref["ms_per_pick"],
            "speedup_vs_reference": ref["seconds"] / ours["seconds"],
            "same_leading_picks": ref["same_leading_picks"],
            "potential_ratio_reference_over_ours": ref["potential"] / ours["potential"],
        }
        authors = [r for r in rows if r["provider"] == "authors-loop"]
        if authors:
            doc["summary"]["authors_loop_ms_per_pick"] = authors[0]["ms_per_pick"]
    doc["load_average_at_end"] = list(os.getloadavg())
    end = load_average()
    doc["load_average"] = {"start": harness.load_start, "end": end}
    doc["under_load"] = harness.under_load(end)
    print(f"[badge] load average at end: {end}"
          + ("  -> figures taken UNDER LOAD" if doc["under_load"] else ""))
    doc["results"] = rows
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    json.dump(doc["summary"], sys.stdout, indent=1)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
