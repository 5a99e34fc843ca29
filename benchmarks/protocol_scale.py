"""The whole paper protocol at scale, timed: 50,000 x 1,024 pool, 100 classes.

init 200, 15 x 200, five strategies (random, margin, coreset, alamp, alamp-div), one run,
scikit-learn's LinearSVC (``linear-svc``). The target is under 10 minutes in total on a
2-core machine. Writes ``benchmarks/results/protocol_scale.json`` with the time of every
iteration (fit, predictions, query) per strategy.

The pool is synthetic: Gaussian classes (random means, isotropic noise), so the numbers
measure the loop's cost, not a strategy's merit.

    python benchmarks/protocol_scale.py            # the recorded run
    python benchmarks/protocol_scale.py --quick    # 5,000 x 128, a smoke test in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from _harness import Run, load_average

from alamp_fast.al.protocol import simulate
from alamp_fast.al.report import machine, versions

RESULTS = Path(__file__).resolve().parent / "results"
STRATEGIES = ("random", "margin", "coreset", "alamp", "alamp-div")
TARGET_S = 600.0


def synthetic(n_pool, n_test, d, n_classes, noise, seed):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, d), dtype=np.float32)
    y = np.arange(n_pool + n_test) % n_classes
    rng.shuffle(y)
    X = rng.standard_normal((y.size, d), dtype=np.float32)
    X *= noise
    X += means[y]
    return X[:n_pool], y[:n_pool], X[n_pool:], y[n_pool:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="pool size")
    p.add_argument("--d", type=int, default=1024, help="feature dimension")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--n-test", type=int, default=5_000)
    p.add_argument("--noise", type=float, default=6.0, help="noise std (class means ~ N(0, I))")
    p.add_argument("--init", type=int, default=200)
    p.add_argument("--step", type=int, default=200)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--classifier", default="linear-svc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="5,000 x 128, 20 classes, 3 x 100: a smoke test (not recorded)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/results/protocol_scale.json; "
                        "protocol_scale_quick.json with --quick)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.d, args.classes, args.n_test = 5_000, 128, 20, 1_000
        args.init, args.step, args.iterations = 100, 100, 3
    out = args.out or RESULTS / ("protocol_scale_quick.json" if args.quick
                                 else "protocol_scale.json")

    # prints the load average now; the end's is printed and both are recorded below
    run = Run("protocol_scale")
    t0 = time.perf_counter()
    X, y, Xt, yt = synthetic(args.n, args.n_test, args.d, args.classes, args.noise, args.seed)
    gen_s = time.perf_counter() - t0
    res = simulate(X, y, Xt, yt, strategies=STRATEGIES, classifier=args.classifier,
                   init=args.init, step=args.step, iterations=args.iterations, runs=1,
                   seed=args.seed, progress="auto")
    summary = res.summary()
    per_strategy = {}
    for name in STRATEGIES:
        rec = res.records[name][0]
        iteration_s = rec.fit_s + rec.predict_s + rec.query_s
        per_strategy[name] = {
            "labeled": rec.labeled.tolist(),
            "accuracy": rec.accuracy.tolist(),
            "fit_s": rec.fit_s.tolist(),
            "predict_s": rec.predict_s.tolist(),
            "query_s": rec.query_s.tolist(),
            "iteration_s": iteration_s.tolist(),
            "total_s": float(iteration_s.sum()),
            "mean_accuracy": summary[name]["mean_accuracy"],
        }
    doc = {
        "benchmark": "protocol_scale",
        "config": {**res.config, "n_pool": args.n, "n_features": args.d,
                   "n_classes": args.classes, "n_test": args.n_test, "noise": args.noise,
                   "data": "synthetic Gaussian classes"},
        "total_s": res.total_s,
        "data_generation_s": gen_s,
        "target_s": TARGET_S,
        "within_target": res.total_s < TARGET_S,
        "strategies": per_strategy,
        "versions": versions(),
        "machine": machine(),
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")},
    }
    load_end = load_average()
    doc["load_average"] = {"start": run.load_start, "end": load_end}
    doc["under_load"] = run.under_load(load_end)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"{'strategy':10s} {'total s':>8s} {'fit s':>7s} {'pred s':>7s} {'query s':>8s} "
          f"{'mean acc':>8s}")
    for name, s in per_strategy.items():
        print(f"{name:10s} {s['total_s']:8.1f} {sum(s['fit_s']):7.1f} {sum(s['predict_s']):7.1f} "
              f"{sum(s['query_s']):8.2f} {100 * s['mean_accuracy']:8.2f}")
    print(f"total {res.total_s:.1f} s (target < {TARGET_S:.0f} s); wrote {out}")
    print(f"[protocol_scale] load average at end: {load_end}"
          + ("  -> figures taken UNDER LOAD" if doc["under_load"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
