"""k-center greedy: alamp_fast (numba, exact) against FAISS flat and HNSW, side by side.

At each pool size (default 1e5 and 1e6 rows x 512 float32, 200 labeled, b = 20) in one run:
``alamp_fast.kcenter_greedy``, ``kcenter_greedy_faiss(index="flat")`` and
``kcenter_greedy_faiss(index="hnsw")`` (approximate nearest-labeled search); for each the time,
whether its picks equal the exact ones, and its covering radius (exact, float64) against the
exact algorithm's. Writes ``benchmarks/results/faiss_cpu.json``::

    python benchmarks/bench_faiss.py [--sizes 100000 1000000] [--b 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _harness import Run, timeit

import alamp_fast as af
from alamp_fast.coreset_faiss import covering_radius, kcenter_greedy_faiss


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--labeled", type=int, default=200)
    p.add_argument("--b", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import faiss

    run = Run("faiss_cpu")
    results = []
    for n in args.sizes:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, args.d), dtype=np.float32)
        lab = rng.choice(n, args.labeled, replace=False)
        variants = {
            "alamp_fast": lambda X=X, lab=lab: af.kcenter_greedy(X, lab, args.b),
            "faiss_flat": lambda X=X, lab=lab: kcenter_greedy_faiss(X, lab, args.b),
            "faiss_hnsw": lambda X=X, lab=lab: kcenter_greedy_faiss(X, lab, args.b, index="hnsw"),
        }
        exact = variants["alamp_fast"]()
        r_exact = covering_radius(X, np.r_[lab, exact])
        row = {"n": n, "d": args.d, "labeled": args.labeled, "b": args.b}
        for name, fn in variants.items():
            picks = fn()
            t = timeit(fn, repeats=args.repeats, warmup=0)
            r = covering_radius(X, np.r_[lab, picks])
            row[name] = {
                **t,
                "same_picks_as_exact": bool(np.array_equal(picks, exact)),
                "covering_radius": r,
                "covering_radius_error": r / r_exact - 1.0,
            }
            print(n, name, f"{t['min_s']:.3f} s", "same picks" if row[name][
                "same_picks_as_exact"] else "different picks",
                f"radius error {row[name]['covering_radius_error']:+.2e}")
        for name in ("faiss_flat", "faiss_hnsw"):
            row[name]["ratio_to_alamp_fast"] = row[name]["min_s"] / row["alamp_fast"]["min_s"]
        results.append(row)
        del X
    run.write(results, None if args.out is None else __import__("pathlib").Path(args.out),
              faiss_version=faiss.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
