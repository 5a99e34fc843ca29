"""top2_margin on float16 against float32 at 1e6 x 100, in the same run.

float16 rows are widened to float32 in the vector loads (F16C's ``vcvtph2ps`` through an
LLVM ``fpext``); the software widening (the route on CPUs without F16C) is measured too, and
both dtypes on one thread (the serial kernel), with its CPU time (a figure that load on the
machine inflates far less than wall time). Calls
alternate between the variants so load changes hit all of them alike. Writes
``benchmarks/results/float16_cpu.json``::

    python benchmarks/bench_float16.py [--n 1000000] [--classes 100] [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
from _harness import Run

import alamp_fast as af
from alamp_fast import uncertainty
from alamp_fast._simd import HAS_F16C


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    run = Run("float16_cpu")
    rng = np.random.default_rng(0)
    P32 = rng.random((args.n, args.classes), dtype=np.float32)
    P16 = P32.astype(np.float16)

    def software():
        saved = uncertainty.HAS_F16C
        uncertainty.HAS_F16C = False
        try:
            return af.top2_margin(P16)
        finally:
            uncertainty.HAS_F16C = saved

    def one_thread(P):
        def call():
            saved = numba.get_num_threads()
            numba.set_num_threads(1)  # the serial twin
            try:
                return af.top2_margin(P)
            finally:
                numba.set_num_threads(saved)

        return call

    variants = {
        "float32": lambda: af.top2_margin(P32),
        "float16": lambda: af.top2_margin(P16),
        "float16_software_widening": software,
        "float32_one_thread": one_thread(P32),
        "float16_one_thread": one_thread(P16),
    }
    same = [np.array_equal(a.view(np.uint32), b.view(np.uint32)) and np.array_equal(c, e)
            for (a, c), (b, e) in [(variants["float16"](), software())]]
    times = {k: [] for k in variants}
    cpu = {k: [] for k in variants}  # this thread's CPU time: the whole cost of a serial call
    for f in variants.values():
        f()
    for _ in range(args.repeats):
        for k, f in variants.items():
            c = time.thread_time()
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
            cpu[k].append(time.thread_time() - c)
    rows = {}
    for k, ts in times.items():
        nbytes = P16.nbytes if k.startswith("float16") else P32.nbytes
        rows[k] = {
            "min_s": min(ts),
            "median_s": float(np.median(ts)),
            "repeats": len(ts),
            "input_gb_per_s": nbytes / min(ts) / 1e9,
        }
        if k.endswith("_one_thread"):  # CPU time: what load on the other core does not inflate
            rows[k]["min_cpu_s"] = min(cpu[k])
    for k, ref in (("float16", "float32"), ("float16_software_widening", "float32"),
                   ("float16_one_thread", "float32_one_thread")):
        rows[k]["ratio_to_float32"] = rows[k]["min_s"] / rows[ref]["min_s"]
        rows[k]["median_ratio_to_float32"] = rows[k]["median_s"] / rows[ref]["median_s"]
    rows["float16_one_thread"]["cpu_ratio_to_float32"] = (
        rows["float16_one_thread"]["min_cpu_s"] / rows["float32_one_thread"]["min_cpu_s"])
    for k, r in rows.items():
        print(f"{k:<28} {r['min_s'] * 1e3:8.2f} ms  (median {r['median_s'] * 1e3:.2f})"
              + (f"  x{r['ratio_to_float32']:.2f} of float32" if "ratio_to_float32" in r else ""))
    run.write(
        rows,
        None if args.out is None else __import__("pathlib").Path(args.out),
        sizes={"n": args.n, "classes": args.classes},
        f16c=HAS_F16C,
        target="float16 min_s <= float32 min_s (ratio_to_float32 <= 1.0)",
        bit_identical_to_software=bool(same[0]),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
