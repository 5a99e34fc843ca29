"""Paper-style protocol on real features: Caltech-101 (imbalanced) and CIFAR-10.

For each dataset: L2-normalised MobileNet-v1 features from the data directory (see
``../shared/data/README.md``), ``BACKGROUND_Google`` dropped from Caltech-101, the
``linear-svc`` classifier (cost-sensitive on Caltech-101, whose pool has ir 1.37; plain
on the balanced CIFAR-10), init 200, 15 x 200, 3 runs, every strategy. Each dataset writes
``benchmarks/results/paper_<name>/``: ``results.json``, ``results.csv``, ``accuracy.png``,
``imbalance.png`` and ``table.md``.

    python benchmarks/reproduce_paper.py                 # the full protocol (CPU heavy)
    python benchmarks/reproduce_paper.py --quick         # init 100, 5 x 100, 2 runs, 5 strategies
    python benchmarks/reproduce_paper.py --datasets caltech101 --runs 5

The data directory is ``--data``, else ``$ALAMP_FAST_DATA``, else ``<repo>/../shared/data``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from alamp_fast.datasets import load_dataset
from alamp_fast.protocol import simulate
from alamp_fast.report import summary_table, write_results
from alamp_fast.strategies import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

DATASETS = {
    # name: (folder, classes to drop, accuracy targets for samples-to-target)
    "caltech101": ("caltech101", ["BACKGROUND_Google"], (0.8, 0.85, 0.9)),
    "cifar10": ("cifar10", [], (0.7, 0.75, 0.8)),
}
QUICK = {"init": 100, "step": 100, "iterations": 5, "runs": 2,
         "strategies": ["random", "margin", "coreset", "alamp", "alamp-div"]}


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ALAMP_FAST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="data directory holding caltech101/ and cifar10/")
    p.add_argument("--datasets", default="caltech101,cifar10")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--init", type=int, default=200)
    p.add_argument("--step", type=int, default=200)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classifier", default="linear-svc")
    p.add_argument("--cifar-imbalance", type=float, default=None, metavar="IR",
                   help="subsample the CIFAR-10 pool to this ir (cost-sensitive classifier)")
    p.add_argument("--quick", action="store_true",
                   help="init 100, 5 x 100, 2 runs, 5 strategies; writes paper_<name>_quick/")
    p.add_argument("--out-root", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cfg = {"init": args.init, "step": args.step, "iterations": args.iterations,
           "runs": args.runs, "strategies": [s for s in args.strategies.split(",") if s]}
    if args.quick:
        cfg.update(QUICK)
    root = data_dir(args.data)
    names = [n for n in args.datasets.split(",") if n]
    for name in names:
        if name not in DATASETS:
            p.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    for name in names:
        folder, drop, targets = DATASETS[name]
        train = root / folder / "feats_mobilenetv1_train.npz"
        test = root / folder / "feats_mobilenetv1_test.npz"
        if not train.exists():
            print(f"{name}: no features at {train}; skipped", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        ds = load_dataset(train, test, drop_classes=drop)
        ds.name = name
        imbalance = args.cifar_imbalance if name == "cifar10" else None
        res = simulate(ds, classifier=args.classifier, seed=args.seed, targets=targets,
                       imbalance=imbalance, progress=True, **cfg)
        out = args.out_root / (f"paper_{name}_quick" if args.quick else f"paper_{name}")
        extra = {"benchmark": "reproduce_paper", "quick": args.quick, "argv": sys.argv[1:],
                 "drop_classes": drop, "wall_s": time.perf_counter() - t0}
        write_results(res, out, extra=extra)
        doc = json.loads((out / "results.json").read_text())
        (out / "table.md").write_text(
            f"{name}: pool {doc['dataset']['n_pool']} (ir {doc['dataset']['pool_ir']:.2f}), "
            f"{doc['dataset']['n_classes']} classes, test {doc['dataset']['n_test']}; "
            f"{args.classifier}{' cost-sensitive' if doc['config']['cost_sensitive'] else ''}, "
            f"init {cfg['init']}, {cfg['iterations']} x {cfg['step']}, {cfg['runs']} runs\n\n"
            + summary_table(doc, markdown=True) + "\n"
        )
        print(f"\n{name} ({time.perf_counter() - t0:.0f} s) -> {out}")
        print(summary_table(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
