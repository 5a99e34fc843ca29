"""k-center greedy against its one-pass floor, idle and with the other core busy.

Caltech-101 size (the train split's MobileNet features, 200 labeled, b = 200), in one run:

* ``query``: ``kcenter_greedy`` from scratch (nearest-labeled search + 200 greedy steps);
* ``query_with_state``: a later query of the same AL run (:class:`KCenterState`, 200 newly
  labeled rows folded in; the state of the earlier query is prepared outside the timing);
* ``query_eager_steps``: the same query with the steps as they were before the lazy loop
  (every step a float32 dot product per row; no float16 screen): the reference of the
  lazy steps, in the same run;
* ``floor``: one float32 GEMM of the pool against the labeled rows plus b GEMVs ``X @ c``;

each measured idle, with a spinning process on one core, and with both sides on one thread
(``one_thread``: BLAS and numba limited to one thread; the work ratio, which a loaded
machine's scheduling does not distort). Then the first nearest-labeled
search at ``--big-n`` x 512 against a lone float32 GEMM of the same size. The cases of a
figure alternate (floor, query, later query, floor, ...), so a change of the machine's load
hits both sides of a ratio alike; ratios are of medians (and of minima). Every figure
records the load average and the CPU time other processes took while it ran
(``foreign_cpu``, cores). Each timed call starts after a 0.15 s pause, so no case runs
beside the previous one's spinning BLAS threads. Writes ``benchmarks/results/coreset_cpu.json``; under two minutes on
an idle 2-core machine (2-3.5 minutes on a loaded one)::

    python benchmarks/bench_coreset.py [--data DIR] [--big-n 1000000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
from _harness import Run, busy_core, load_average

import alamp_fast as af
from alamp_fast import coreset
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


class ForeignCpu:
    """CPU time other processes took (cores, averaged over the wall time), from /proc/stat;
    None where that file is missing."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_s(), _own_s()

    def cores(self) -> float | None:
        busy = _busy_s()
        if busy is None or self.busy0 is None:
            return None
        wall = max(time.perf_counter() - self.t0, 1e-9)
        return round(max(0.0, (busy - self.busy0) - (_own_s() - self.own0)) / wall, 2)


def _busy_s() -> float | None:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# untimed pause before each timed call: OpenBLAS's threads keep spinning for about 0.1 s
# after every BLAS call, so without it the case after the floor (or after a prepare step)
# would share a core with the previous case's idle threads
SETTLE_S = 0.15


@contextlib.contextmanager
def eager_steps():
    """The greedy steps as before the lazy loop: eager, float32 screen."""
    saved = coreset._LAZY_MAX_SHARE, coreset._HALF_MIN_STEPS
    coreset._LAZY_MAX_SHARE, coreset._HALF_MIN_STEPS = 0.0, 1 << 62
    try:
        yield
    finally:
        coreset._LAZY_MAX_SHARE, coreset._HALF_MIN_STEPS = saved


def lazy_share(X: np.ndarray, lab: np.ndarray, b: int) -> dict:
    """Distances the lazy steps measure, against the eager steps' (every candidate, every
    step)."""
    min_d2 = _nearest_d2(X, X[lab])
    min_d2[lab] = -1.0
    n, d = X.shape
    chosen = np.empty(b, dtype=np.int64)
    chosen[0] = int(np.argmax(min_d2))
    scratch = (np.empty((b, d)), np.empty(n, np.int64), np.empty(n), np.empty(n, np.int64))
    done, measured = coreset._lazy_run(X, min_d2, chosen, *scratch, coreset._LAZY_MAX_SHARE)
    eager = (n - lab.size - 1) * (b - 1)
    return {
        "steps_lazy": int(done),
        "measured": int(measured),
        "eager": int(eager),
        "share": measured / eager,
    }


def alternate(cases: dict, repeats: int, prepare: dict | None = None) -> dict:
    """Time the ``cases`` in turn, ``repeats`` rounds after one warm-up round; min/median.
    ``prepare[name]()``, where given, runs untimed before each call of that case; every
    timed call starts after a :data:`SETTLE_S` pause."""
    prepare = prepare or {}
    times = {k: [] for k in cases}
    for r in range(repeats + 1):
        for name, fn in cases.items():
            if name in prepare:
                prepare[name]()
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t)
    return {
        k: {"min_s": min(v), "median_s": float(np.median(v)), "repeats": repeats}
        for k, v in times.items()
    }


def caltech_cases(X: np.ndarray, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    n_lab, b = 200, 200
    lab = rng.choice(X.shape[0], n_lab, replace=False)
    first = af.kcenter_greedy(X, lab, b)
    lab2 = np.r_[lab, first]
    L = np.ascontiguousarray(X[lab])
    states = []

    def floor():
        X @ L.T
        for i in range(b):
            X @ X[i]

    def query():
        return af.kcenter_greedy(X, lab, b)

    def query_eager():
        with eager_steps():
            return af.kcenter_greedy(X, lab, b)

    def earlier():  # the earlier query of the run, untimed
        st = af.KCenterState()
        af.kcenter_greedy(X, lab, b, state=st)
        states.append(st)

    def later():
        return af.kcenter_greedy(X, lab2, b, state=states.pop())

    earlier()
    assert np.array_equal(later(), af.kcenter_greedy(X, lab2, b))
    assert np.array_equal(query_eager(), first)
    out = {"lazy_distances": lazy_share(X, lab, b)}
    print("lazy steps measure", out["lazy_distances"])
    for cond in ("idle", "other_core_busy", "one_thread"):
        ctx = {"idle": _null, "other_core_busy": busy_core, "one_thread": one_thread}[cond]()
        with ctx as busy_load:
            row = {"load_average_during": busy_load or load_average()}
            foreign = ForeignCpu()
            row.update(
                alternate(
                    {
                        "floor": floor,
                        "query": query,
                        "query_with_state": later,
                        "query_eager_steps": query_eager,
                    },
                    repeats,
                    prepare={"query_with_state": earlier},
                )
            )
            # the spinning process is "foreign" too: subtract the core it holds
            fc = foreign.cores()
            row["foreign_cpu"] = (
                None if fc is None else round(max(0.0, fc - (cond == "other_core_busy")), 2)
            )
            for k in ("query", "query_with_state", "query_eager_steps"):
                row[k]["ratio_to_floor"] = row[k]["min_s"] / row["floor"]["min_s"]
                row[k]["median_ratio_to_floor"] = row[k]["median_s"] / row["floor"]["median_s"]
        out[cond] = row
        print(
            cond,
            {
                k: (round(v["median_s"], 4), round(v.get("median_ratio_to_floor", 1), 2))
                for k, v in row.items()
                if isinstance(v, dict)
            },
            "other processes:",
            row["foreign_cpu"],
            "cores",
        )
    idle, busy = out["idle"]["query"], out["other_core_busy"]["query"]
    out["busy_over_idle"] = busy["min_s"] / idle["min_s"]
    out["median_busy_over_idle"] = busy["median_s"] / idle["median_s"]
    idle, busy = out["idle"]["query_eager_steps"], out["other_core_busy"]["query_eager_steps"]
    out["eager_steps_busy_over_idle"] = busy["min_s"] / idle["min_s"]
    out["sizes"] = {"n": X.shape[0], "d": X.shape[1], "labeled": n_lab, "b": b, "dtype": "float32"}
    return out


@contextlib.contextmanager
def one_thread():
    """Both sides on one thread (BLAS and numba): their work, whatever the other processes
    do to a multi-threaded run's scheduling (a figure that stays comparable under load)."""
    from threadpoolctl import threadpool_limits

    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield None
    finally:
        numba.set_num_threads(saved)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def big_search(n: int, d: int, n_lab: int, repeats: int) -> dict:
    """The search against a lone GEMM, both on all threads, then both on one thread."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d), dtype=np.float32)
    L = X[rng.choice(n, n_lab, replace=False)]
    Lt = np.ascontiguousarray(L.T)
    out = {"sizes": {"n": n, "d": d, "labeled": n_lab, "dtype": "float32"}}
    for cond, ctx in (("all_threads", _null), ("one_thread", one_thread)):
        with ctx():
            load = load_average()
            foreign = ForeignCpu()
            t = alternate(
                {"lone_gemm": lambda: X @ Lt, "nearest_labeled_search": lambda: _nearest_d2(X, L)},
                repeats if cond == "all_threads" else max(2, repeats - 1),
            )
            gemm, search = t["lone_gemm"], t["nearest_labeled_search"]
            row = {
                "load_average_during": load,
                "foreign_cpu": foreign.cores(),
                "lone_gemm": gemm,
                "nearest_labeled_search": search,
                "ratio_to_gemm": search["min_s"] / gemm["min_s"],
                "median_ratio_to_gemm": search["median_s"] / gemm["median_s"],
            }
        print(
            f"first search {n} x {d}, {cond}: {search['median_s']:.3f} s, gemm "
            f"{gemm['median_s']:.3f} s, median ratio {row['median_ratio_to_gemm']:.2f}; "
            f"other processes: {row['foreign_cpu']} cores"
        )
        if cond == "all_threads":
            out.update(row)  # the headline figure, at the top level as before
        else:
            out[cond] = row
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
    results["first_search"] = big_search(args.big_n, 512, 200, max(3, args.repeats // 2))
    run.write(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
