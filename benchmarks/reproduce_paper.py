"""The paper's SVM-scheme protocol on real features, resumable: curves, imbalance, diversification.

Per dataset, every strategy (random, margin, entropy, least confidence, coreset, alamp,
alamp-div, random-div, margin-div) with the ``paper`` classifier (RBF SVC, Platt
probabilities, C by cross-validation on the labeled set, ``class_weight="balanced"`` on
imbalanced pools), init 200 then 15 x 200, 5 runs, seed 0. Datasets:

``caltech101``
    MobileNet-v1 features of Caltech-101, ``BACKGROUND_Google`` dropped (naturally
    imbalanced, pool ir 1.37);
``cifar10``
    the same features of CIFAR-10 (balanced);
``cifar10-imb``
    CIFAR-10 with the pool subsampled to ``--cifar-imbalance`` (ir 1.0 by default), the
    paper's imbalance induction (:func:`alamp_fast.al.imbalance.induce_imbalance`).

Each dataset writes ``OUT/<name>/``: ``results.json`` and ``results.csv`` (every run of every
strategy), ``accuracy.png`` (the accuracy curves, paper Fig. 2/3), ``imbalance.png`` (the
imbalance profile, Fig. 4), ``diversification.png`` (each strategy against its ``-div``
variant, Fig. 5) and ``table.md`` (mean accuracy and gain over random per strategy, samples
to reach the target accuracies, timings); ``OUT/summary.md`` gathers the tables.

Every finished (strategy, run) is saved in ``OUT/<name>/checkpoint/`` as it completes: run the
same command again after an interruption and it continues where it stopped (same final
numbers); a dataset whose results are complete is skipped. ``--restart`` starts over.

``--estimate`` runs nothing of the protocol: per dataset it times one iteration (fit, test
predictions, pool scoring, one query of each strategy) at the first, middle and last labeled
count of the cycle, interpolates over the cycle's points and writes ``OUT/estimate.json``:
an *estimate* of the full protocol's time on this machine at its current load.

The machine's load average (1, 5, 15 minutes) is printed at the start and at the end
(``benchmarks/_harness.py``) and recorded: per dataset before and after its simulation in
``results.json`` (``reproduce.load_average_before`` / ``_after``, ``reproduce.under_load``),
for the whole command in ``summary.md``, and in ``estimate.json``. ``under_load`` marks timings
taken while other work ran (the harness's rule), which are inflated.

    python benchmarks/reproduce_paper.py --out results/paper          # the full protocol
    python benchmarks/reproduce_paper.py --out /tmp/short --iterations 3 --runs 2
    python benchmarks/reproduce_paper.py --out results/mine --train my_train.npz \\
        --test my_test.npz --name mine

The data directory is ``--data``, else ``$ALAMP_FAST_DATA``, else ``<repo>/../shared/data``
(the project's shared features; see its README). A missing file is one line naming it and
exit code 2, before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:  # imported by file (tests), not run from benchmarks/
    sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import Run, load_average  # noqa: E402

from alamp_fast.al.classifiers import CLASSIFIERS  # noqa: E402
from alamp_fast.al.datasets import load_dataset  # noqa: E402
from alamp_fast.al.loop import remove_checkpoint  # noqa: E402
from alamp_fast.al.protocol import simulate  # noqa: E402
from alamp_fast.al.report import summary_table, write_results  # noqa: E402
from alamp_fast.al.strategies import STRATEGIES, canonical_name  # noqa: E402

#: name: (folder, classes to drop, induced imbalance?, targets for samples-to-target)
DATASETS = {
    "caltech101": ("caltech101", ["BACKGROUND_Google"], False, (0.8, 0.85, 0.9)),
    "cifar10": ("cifar10", [], False, (0.7, 0.75, 0.8)),
    "cifar10-imb": ("cifar10", [], True, (0.65, 0.7, 0.75)),
}
FILES = ("feats_mobilenetv1_train.npz", "feats_mobilenetv1_test.npz")
DEFAULT_CLASSIFIER = "paper" if "paper" in CLASSIFIERS else "linear-svc"


class DataMissing(Exception):
    pass


class Terminated(KeyboardInterrupt):
    pass


def data_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("ALAMP_FAST_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def plan(args) -> list[dict]:
    """The datasets to run, with their files checked (DataMissing names the first absent)."""
    jobs = []
    if args.train:
        for path in (args.train, args.test):
            if path and not Path(path).is_file():
                raise DataMissing(f"missing features file {path} (--train/--test)")
        name = args.name or Path(args.train).stem
        jobs.append({"name": name, "train": Path(args.train),
                     "test": Path(args.test) if args.test else None,
                     "drop": list(args.drop_class), "imbalance": args.imbalance,
                     "targets": tuple(args.targets or (0.7, 0.8, 0.9))})
        return jobs
    root = data_dir(args.data)
    for name in args.datasets:
        folder, drop, induced, targets = DATASETS[name]
        train, test = (root / folder / f for f in FILES)
        for path in (train, test):
            if not path.is_file():
                raise DataMissing(
                    f"missing {path}: the MobileNet-v1 features of {folder} (the project's "
                    f"shared data; see README, 'Reproducing the paper'); point --data (or "
                    f"$ALAMP_FAST_DATA) at a directory holding {folder}/{FILES[0]}, or pass "
                    "--train/--test"
                )
        jobs.append({"name": name, "train": train, "test": test, "drop": drop,
                     "imbalance": args.cifar_imbalance if induced else None,
                     "targets": tuple(args.targets or targets)})
    return jobs


def run_one(job: dict, args, out_root: Path, run: Run) -> dict:
    out = out_root / job["name"]
    ckpt = out / "checkpoint"
    config = {"init": args.init, "step": args.step, "iterations": args.iterations,
              "runs": args.runs, "strategies": args.strategies, "classifier": args.classifier,
              "seed": args.seed, "imbalance": job["imbalance"], "targets": list(job["targets"])}
    done_file = out / "results.json"
    if args.restart:
        remove_checkpoint(ckpt)
    elif done_file.exists() and not ckpt.exists():
        doc = json.loads(done_file.read_text())
        if doc.get("reproduce", {}).get("config") == config:
            print(f"{job['name']}: complete in {out}, skipped (--restart reruns it)")
            return doc
    t0 = time.perf_counter()
    ds = load_dataset(job["train"], job["test"], drop_classes=job["drop"], seed=args.seed,
                      name=job["name"])
    n_done = len(list(ckpt.glob("S*-R*.npz"))) if ckpt.is_dir() else 0
    if n_done:
        print(f"{job['name']}: resuming, {n_done} finished (strategy, run) result(s) in {ckpt}")
    load_before = load_average()
    res = simulate(ds, strategies=args.strategies, classifier=args.classifier, init=args.init,
                   step=args.step, iterations=args.iterations, runs=args.runs, seed=args.seed,
                   targets=job["targets"], imbalance=job["imbalance"],
                   progress=False if args.quiet else "auto", checkpoint=ckpt, resume=True)
    wall = time.perf_counter() - t0
    load_after = load_average()
    fits = sum(r.fit_s.sum() + r.predict_s.sum() + r.query_s.sum()
               for recs in res.records.values() for r in recs)
    n_iters = sum(r.labeled.size for recs in res.records.values() for r in recs)
    extra = {
        "benchmark": "reproduce_paper",
        "argv": sys.argv[1:],
        "reproduce": {
            "config": config,
            "wall_s_this_session": wall,
            "simulation_s": res.total_s,
            "seconds_per_iteration": fits / n_iters,
            "load_average_before": load_before,
            "load_average_after": load_after,
            # the command's start load, or this dataset's end load above what the
            # simulation itself adds (benchmarks/_harness.py): timings taken on a busy machine
            "under_load": run.under_load(load_after),
            "resumed_runs": n_done,
        },
        "drop_classes": job["drop"],
    }
    write_results(res, out, plots=not args.no_plots, extra=extra)
    remove_checkpoint(ckpt)
    doc = json.loads(done_file.read_text())
    (out / "table.md").write_text(table_md(doc) + "\n")
    print(f"\n{job['name']} ({res.total_s:.0f} s of simulation) -> {out}")
    print(summary_table(doc))
    return doc


def estimate_one(job: dict, args) -> dict:
    """Time one iteration at the first, middle and last labeled count; extrapolate."""
    import numpy as np

    from alamp_fast.al.classifiers import make_classifier, pool_probs, pool_top2_margin
    from alamp_fast.al.imbalance import IMBALANCED_IR
    from alamp_fast.al.loop import prepare_protocol
    from alamp_fast.al.strategies import Strategy, get_strategy

    ds = load_dataset(job["train"], job["test"], drop_classes=job["drop"], seed=args.seed,
                      name=job["name"])
    setup = prepare_protocol(ds.y_train, ds.y_test, strategies=args.strategies,
                             canonical=canonical_name, strategy_type=Strategy, init=args.init,
                             step=args.step, iterations=args.iterations, runs=args.runs,
                             seed=args.seed, imbalance=job["imbalance"])
    X = ds.X_train[setup.pool_rows]
    cost = job["imbalance"] is not None or setup.pool_ir >= IMBALANCED_IR
    points = args.init + args.step * np.arange(args.iterations + 1)
    probe = sorted({int(points[0]), int(points[len(points) // 2]), int(points[-1])})
    rng = np.random.default_rng(args.seed)
    rows, per = [], {}
    for n in probe:
        labeled = rng.choice(X.shape[0], n, replace=False)
        clf = make_classifier(args.classifier, cost_sensitive=cost, random_state=0)
        t0 = time.perf_counter()
        clf.fit(X[labeled], setup.y_pool[labeled])
        t1 = time.perf_counter()
        clf.predict(ds.X_test)
        test_s = time.perf_counter() - t1
        pool_top2_margin(clf, X[:64], setup.n_classes)  # compile outside the clock
        t2 = time.perf_counter()
        margin, top = pool_top2_margin(clf, X, setup.n_classes)
        t3 = time.perf_counter()
        probs = pool_probs(clf, X, setup.n_classes, np.float32)
        t4 = time.perf_counter()
        query = {}
        for name in args.strategies:
            s = get_strategy(name, seed=0)
            s.query(probs[:64], 2, features=X[:64])  # compile outside the clock
            s.reset()
            q0 = time.perf_counter()
            if s.accepts_margin:
                s.query(None, args.step, labeled=labeled, margin=margin, top_class=top,
                        features=X)
            else:
                s.query(probs, args.step, labeled=labeled, features=X)
            query[name] = time.perf_counter() - q0
        per[n] = {"fit_s": t1 - t0, "test_s": test_s, "pool_margin_s": t3 - t2,
                  "pool_probs_s": t4 - t3, "query_s": query}
        rows.append(n)
        print(f"{job['name']}: {n} labels: fit {t1 - t0:.1f} s, test {test_s:.1f} s, "
              f"pool {t3 - t2:.1f} s", flush=True)

    return {"labeled_points": points.tolist(), "probed": {str(n): per[n] for n in rows},
            **extrapolate(per, points, args.strategies, args.runs)}


def extrapolate(probed: dict, points, strategies, runs: int) -> dict:
    """The protocol's time from the probed iterations, interpolated over the cycle's points.

    Per iteration: fit and test predictions; before each query, the pool scoring the strategy
    needs (none for random, the fused margins for the margin family, the float32
    probabilities otherwise) and the query itself.
    """
    import numpy as np

    from alamp_fast.al.strategies import get_strategy

    rows = sorted(int(n) for n in probed)
    per = {n: probed[n] if n in probed else probed[str(n)] for n in rows}

    def interp(values):
        return np.interp(points, rows, values)

    base = interp([per[n]["fit_s"] + per[n]["test_s"] for n in rows])
    by_strategy = {}
    for name in strategies:
        s = get_strategy(name)
        if not s.needs_probs:
            pool = np.zeros(len(points))
        else:
            key = "pool_margin_s" if s.accepts_margin else "pool_probs_s"
            pool = interp([per[n][key] for n in rows])
        query = interp([per[n]["query_s"][name] for n in rows])
        by_strategy[name] = float(base.sum() + pool[:-1].sum() + query[:-1].sum())
    total = runs * sum(by_strategy.values())
    return {"estimated_s_per_run": by_strategy, "estimated_total_s": total,
            "estimated_total_h": total / 3600}


def table_md(doc: dict) -> str:
    ds, cfg, rep = doc["dataset"], doc["config"], doc["reproduce"]
    head = (
        f"**{ds['name']}**: pool {ds['n_pool']:,} (ir {ds['pool_ir']:.2f}), "
        f"{ds['n_classes']} classes, test {ds['n_test']:,}; `{cfg['classifier']}`"
        f"{' cost-sensitive' if cfg['cost_sensitive'] else ''}; init {cfg['init']}, "
        f"{cfg['iterations']} x {cfg['step']}, {cfg['runs']} runs, seed {cfg['seed']}. "
        f"Simulation {rep['simulation_s']:.0f} s, {rep['seconds_per_iteration']:.2f} s per "
        f"iteration (fit + predictions + query), load average {rep['load_average_before']} "
        f"at start, {rep.get('load_average_after')} at end"
        f"{' (under load: timings inflated)' if rep.get('under_load') else ''}."
    )
    return head + "\n\n" + summary_table(doc, markdown=True)


def _print_end(run: Run, load_end) -> None:
    print(f"[{run.name}] load average at end: {load_end}"
          + ("  -> figures taken UNDER LOAD" if run.under_load(load_end) else ""))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="reproduce_paper.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output directory (one folder per dataset, summary.md)")
    p.add_argument("--data", metavar="DIR",
                   help="directory holding caltech101/ and cifar10/ (default: $ALAMP_FAST_DATA, "
                        "else <repo>/../shared/data)")
    p.add_argument("--datasets", default="caltech101,cifar10,cifar10-imb", metavar="LIST",
                   help=f"comma-separated, of {', '.join(DATASETS)} (default: all)")
    p.add_argument("--train", metavar="FILE",
                   help="your own pool features instead of --datasets (any format of "
                        "alamp-fast simulate)")
    p.add_argument("--test", metavar="FILE", help="their test split (default: a 25%% split)")
    p.add_argument("--name", metavar="NAME", help="name of the --train dataset")
    p.add_argument("--drop-class", action="append", default=[], metavar="NAME",
                   help="with --train: a class to remove (repeatable)")
    p.add_argument("--imbalance", type=float, metavar="IR",
                   help="with --train: subsample the pool to this ir first")
    p.add_argument("--cifar-imbalance", type=float, default=1.0, metavar="IR",
                   help="ir of the cifar10-imb pool (default 1.0)")
    p.add_argument("--strategies", default=",".join(STRATEGIES), metavar="LIST",
                   help="comma-separated (default: all nine)")
    p.add_argument("--classifier", default=DEFAULT_CLASSIFIER, metavar="NAME",
                   help=f"one of {', '.join(CLASSIFIERS)} (default {DEFAULT_CLASSIFIER})")
    p.add_argument("--init", type=int, default=200, metavar="N", help="(default 200)")
    p.add_argument("--step", type=int, default=200, metavar="N", help="(default 200)")
    p.add_argument("--iterations", type=int, default=15, metavar="N", help="(default 15)")
    p.add_argument("--runs", type=int, default=5, metavar="N", help="(default 5)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="(default 0)")
    p.add_argument("--targets", metavar="LIST",
                   help="accuracies for samples-to-target (default: per dataset)")
    p.add_argument("--estimate", action="store_true",
                   help="time a few iterations and write OUT/estimate.json: an estimate of "
                        "the full protocol's time; runs no protocol")
    p.add_argument("--restart", action="store_true",
                   help="discard finished runs and complete results; start over")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (default: shown on a terminal)")
    args = p.parse_args(argv)

    def fail(msg: str, code: int = 2) -> int:
        print(f"reproduce_paper: error: {msg}", file=sys.stderr)
        return code

    try:
        args.datasets = [d for d in args.datasets.split(",") if d]
        unknown = [d for d in args.datasets if d not in DATASETS]
        if unknown and not args.train:
            return fail(f"unknown dataset {unknown[0]!r}; choose from {', '.join(DATASETS)}")
        args.strategies = [canonical_name(s) for s in args.strategies.split(",") if s]
        if args.classifier not in CLASSIFIERS:
            return fail(f"unknown --classifier {args.classifier!r}; "
                        f"choose from {', '.join(CLASSIFIERS)}")
        if args.test and not args.train:
            return fail("--test needs --train")
        args.targets = ([float(t) for t in args.targets.split(",") if t]
                        if args.targets else None)
        jobs = plan(args)
    except DataMissing as exc:
        return fail(str(exc))
    except ValueError as exc:
        return fail(str(exc))
    if not args.no_plots:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            print("reproduce_paper: matplotlib is not installed: no figures (pip install "
                  "'alamp_fast[plot]')", file=sys.stderr)
            args.no_plots = True

    def on_term(signum, frame):
        raise Terminated()

    # prints the load average now; each dataset's results and the end record theirs
    run = Run("reproduce_paper")
    if args.estimate:
        args.out.mkdir(parents=True, exist_ok=True)
        doc = {"estimate": True, "argv": sys.argv[1:] if argv is None else argv,
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
               "load_average_before": run.load_start, "datasets": {}}
        for job in jobs:
            doc["datasets"][job["name"]] = estimate_one(job, args)
            h = doc["datasets"][job["name"]]["estimated_total_h"]
            print(f"{job['name']}: the full protocol would take about {h:.2f} h here (estimate)")
        doc["load_average_after"] = load_end = load_average()
        doc["under_load"] = run.under_load(load_end)
        (args.out / "estimate.json").write_text(json.dumps(doc, indent=1))
        _print_end(run, load_end)
        print(f"wrote {args.out / 'estimate.json'}")
        return 0

    signal.signal(signal.SIGTERM, on_term)
    args.out.mkdir(parents=True, exist_ok=True)
    docs = []
    try:
        for job in jobs:
            docs.append(run_one(job, args, args.out, run))
    except KeyboardInterrupt as exc:
        print("reproduce_paper: interrupted; finished runs are kept: run the same command "
              "again to continue", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (ValueError, FileNotFoundError) as exc:
        return fail(" ".join(str(exc).split()))
    summary = [
        "# Reproduction of the paper's SVM-scheme protocol",
        "",
        f"Command: `python benchmarks/reproduce_paper.py {' '.join(sys.argv[1:])}`"
        if argv is None else f"Arguments: `{' '.join(argv)}`",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs.",
        "",
    ]
    load_end = load_average()
    summary[-1:-1] = [
        f"Load average (1, 5, 15 min): {run.load_start} at start, {load_end} at end"
        + (" (under load: other work ran, timings inflated)." if run.under_load(load_end)
           else "."),
    ]
    for doc in docs:
        summary += [table_md(doc), ""]
    (args.out / "summary.md").write_text("\n".join(summary))
    _print_end(run, load_end)
    print(f"\nwrote {args.out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
