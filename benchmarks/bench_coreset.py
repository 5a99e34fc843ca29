"""k-center greedy against its one-pass floor, idle and with the other core busy.

Caltech-101 size (the train split's MobileNet features, 200 labeled, b = 200), in one run:

* ``query``: ``kcenter_greedy`` from scratch (nearest-labeled search + 200 greedy steps);
* ``query_with_state``: a later query of the same AL run (:class:`KCenterState`, 200 newly
  labeled rows folded in);
* ``floor``: one float32 GEMM of the pool against the labeled rows plus b GEMVs ``X @ c``;

each measured idle and with a spinning process on one core. Then the first nearest-labeled
search at ``--big-n`` x 512 against a lone float32 GEMM of the same size. Writes
``benchmarks/results/coreset_cpu.json``::

    python benchmarks/bench_coreset.py [--data DIR] [--big-n 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from _harness import Run, busy_core, load_average, timeit

import alamp_fast as af
from alamp_fast.coreset import _nearest_d2

DEFAULT_DATA = Path(
    os.environ.get("ALAMP_FAST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def caltech_features(data: Path) -> np.ndarray:
    path = data / "caltech101" / "feats_mobilenetv1_train.npz"
    if not path.exists():
        sys.exit(f"error: {path} not found; pass --data DIR (the folder holding caltech101/)")
    with np.load(path) as d:
        return ((d["Xq"].astype(np.float32) - d["zero_point"]) * d["scale"]).astype(np.float32)


def caltech_cases(X: np.ndarray, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    n_lab, b = 200, 200
    lab = rng.choice(X.shape[0], n_lab, replace=False)
    first = af.kcenter_greedy(X, lab, b)
    lab2 = np.r_[lab, first]

    def query():
        return af.kcenter_greedy(X, lab, b)

    def query_with_state():
        st = af.KCenterState()
        af.kcenter_greedy(X, lab, b, state=st)  # the earlier query of the run
        return st

    states = []

    def later():  # only the later query is timed: the state is prepared outside
        return af.kcenter_greedy(X, lab2, b, state=states.pop())

    def floor():
        L = X[lab]
        X @ L.T
        for i in range(b):
            X @ X[i]

    assert np.array_equal(af.kcenter_greedy(X, lab2, b, state=query_with_state()),
                          af.kcenter_greedy(X, lab2, b))
    out = {}
    for cond in ("idle", "other_core_busy"):
        ctx = busy_core() if cond == "other_core_busy" else _null()
        with ctx as busy_load:
            row = {"load_average_during": busy_load or load_average()}
            row["floor"] = timeit(floor, repeats=repeats)
            row["query"] = timeit(query, repeats=repeats)
            times = []
            for _ in range(repeats + 1):
                states.append(query_with_state())
                t = timeit(later, repeats=1, warmup=0)
                times.append(t["min_s"])
            times = times[1:]
            row["query_with_state"] = {
                "min_s": min(times), "median_s": float(np.median(times)), "repeats": repeats
            }
            for k in ("query", "query_with_state"):
                row[k]["ratio_to_floor"] = row[k]["min_s"] / row["floor"]["min_s"]
                row[k]["median_ratio_to_floor"] = row[k]["median_s"] / row["floor"]["median_s"]
        out[cond] = row
        print(cond, {k: (round(v["min_s"], 4), round(v.get("ratio_to_floor", 1), 2))
                     for k, v in row.items() if isinstance(v, dict)})
    out["busy_over_idle"] = out["other_core_busy"]["query"]["min_s"] / out["idle"]["query"]["min_s"]
    out["sizes"] = {"n": X.shape[0], "d": X.shape[1], "labeled": n_lab, "b": b,
                    "dtype": "float32"}
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def big_search(n: int, d: int, n_lab: int, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d), dtype=np.float32)
    L = X[rng.choice(n, n_lab, replace=False)]
    Lt = np.ascontiguousarray(L.T)
    gemm = timeit(lambda: X @ Lt, repeats=repeats)
    search = timeit(lambda: _nearest_d2(X, L), repeats=repeats)
    out = {
        "sizes": {"n": n, "d": d, "labeled": n_lab, "dtype": "float32"},
        "lone_gemm": gemm,
        "nearest_labeled_search": search,
        "ratio_to_gemm": search["min_s"] / gemm["min_s"],
        "median_ratio_to_gemm": search["median_s"] / gemm["median_s"],
    }
    print("first search", n, "x", d, round(search["min_s"], 3), "s, gemm",
          round(gemm["min_s"], 3), "s, ratio", round(out["ratio_to_gemm"], 2))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--big-n", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    run = Run("coreset_cpu")
    X = caltech_features(args.data)
    results = {"caltech": caltech_cases(X, args.repeats)}
    results["first_search"] = big_search(args.big_n, 512, 200, max(2, args.repeats // 2))
    run.write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
