"""Host libraries' built-in strategies against alamp_fast's adapters, on CPU.

For each installed host (modAL, scikit-activeml, baal, small-text) this times one query of:

* the host's margin strategy and ours (``margin``), plus our alamp adapter's *second* query
  (the first one only fills its memory), which has no host equivalent, against the host margin;
* the host's k-center core-set and ours (``coreset``), where the host has one
  (scikit-activeml ``CoreSet``, small-text ``GreedyCoreset``).

The model is a stub whose ``predict_proba`` returns precomputed probabilities (float32,
Dirichlet), so the time is the strategy's own: host-side validation and bookkeeping included,
model inference excluded. Each timed call runs after an untimed warm-up on a small pool (imports,
numba compilation). Slow host calls get fewer repeats, and a size whose host time, extrapolated
linearly from the previous size, exceeds ``--max-seconds`` is skipped and recorded as such.

Writes ``benchmarks/results/integrations.json``: machine, versions, configuration, every
timing, and per (host, method, n_pool) the host/ours ratio and whether the picks agree.

Usage::

    python benchmarks/bench_integrations.py            # pools 1e4, 1e5, 1e6
    python benchmarks/bench_integrations.py --quick    # pool 1e4, one repeat: a smoke run
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _harness import Run, load_average

import alamp_fast as af

HOSTS = {"modAL": "modAL-python", "skactiveml": "scikit-activeml", "baal": "baal",
         "small_text": "small-text"}


def timed(setup, fn, repeats: int, max_seconds: float):
    """Min and median seconds of ``fn(setup())`` over up to ``repeats`` runs within a budget.

    ``setup`` runs untimed before every run: stateful strategies need a fresh first query.
    """
    times = []
    while len(times) < repeats:
        arg = setup()
        t0 = time.perf_counter()
        out = fn(arg)
        times.append(time.perf_counter() - t0)
        if sum(times) > max_seconds:
            break
    return out, {"min_s": min(times), "median_s": statistics.median(times),
                 "repeats": len(times)}


class Pool:
    """One synthetic pool: two iterations of probabilities, features, a labeled seed."""

    def __init__(self, n, n_classes, n_features, n_labeled, seed=0):
        rng = np.random.default_rng(seed)
        self.n = n
        self.probs = rng.dirichlet(np.ones(n_classes), size=n).astype(np.float32)
        self.probs_next = rng.dirichlet(np.ones(n_classes), size=n).astype(np.float32)
        self.X = rng.normal(size=(n, n_features)).astype(np.float32)
        self.X[:, 0] = np.arange(n)  # the stub models find a row's probabilities by this id
        self.labeled = rng.choice(n, size=n_labeled, replace=False)
        self.unlabeled = np.setdiff1d(np.arange(n), self.labeled)


class Stub:
    """predict_proba(X) = the probabilities of the rows named by X[:, 0] (or all of them)."""

    def __init__(self, probs, by_id=True):
        self.probs, self.by_id = probs, by_id

    def predict_proba(self, X, **kwargs):
        if not self.by_id:
            return self.probs
        return self.probs[np.asarray(X)[:, 0].astype(np.int64)]


# -- one function per host: yields (method, provider, setup, fn, picks_key) ------------------


def cases_modal(pool, b, bc):
    from modAL.uncertainty import margin_sampling

    from alamp_fast.integrations import modal

    stub = Stub(pool.probs)
    X = pool.X
    yield "margin", "host", lambda: None, lambda _: margin_sampling(stub, X, n_instances=b)[0]
    yield "margin", "alamp_fast", lambda: None, lambda _: modal.margin_sampling(stub, X, b)[0]

    def alamp_setup(with_ids):
        def setup():
            s = modal.Alamp()
            # both queries key rows the same way (by content, or by pool_ids), so the second
            # query finds every row of the first
            kw0 = {"pool_ids": np.arange(pool.n)} if with_ids else {}
            picks, _ = s(stub, X, b, **kw0)
            keep = np.delete(np.arange(pool.n), picks)
            return s, X[keep], keep
        def run(arg):
            s, X2, keep = arg
            kw = {"pool_ids": keep} if with_ids else {}
            return s(Stub(pool.probs_next), X2, b, **kw)[0]
        return setup, run

    setup, run = alamp_setup(False)
    yield "margin", "alamp_fast alamp (2nd query, rows by content)", setup, run
    setup, run = alamp_setup(True)
    yield "margin", "alamp_fast alamp (2nd query, pool_ids)", setup, run
    yield "coreset", "alamp_fast", lambda: None, lambda _: modal.coreset_sampling(
        None, X, bc, X_labeled=X[pool.labeled])[0]


def cases_skactiveml(pool, b, bc):
    from skactiveml.base import SkactivemlClassifier
    from skactiveml.pool import CoreSet, UncertaintySampling

    from alamp_fast.integrations import skactiveml as integ

    class FixedProbs(SkactivemlClassifier):
        def __init__(self, probs=None, classes=None, missing_label=np.nan):
            super().__init__(classes=classes, missing_label=missing_label)
            self.probs = probs

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X):
            return self.probs[np.asarray(X)[:, 0].astype(np.int64)]

    n_classes = pool.probs.shape[1]
    clf = FixedProbs(pool.probs, classes=np.arange(n_classes))
    y = np.full(pool.n, np.nan)
    y[pool.labeled] = pool.labeled % n_classes
    X = pool.X
    host = UncertaintySampling(method="margin_sampling", random_state=0)
    yield "margin", "host", lambda: None, lambda _: host.query(X, y, clf, fit_clf=False,
                                                             batch_size=b)
    yield "margin", "alamp_fast", lambda: None, lambda _: integ.MarginSampling().query(
        X, y, clf, fit_clf=False, batch_size=b)

    def setup():
        qs = integ.Alamp()
        picks = qs.query(X, y, clf, fit_clf=False, batch_size=b)
        y2 = y.copy()
        y2[picks] = 0
        return qs, y2

    def run(arg):
        qs, y2 = arg
        return qs.query(X, y2, FixedProbs(pool.probs_next, classes=np.arange(n_classes)),
                        fit_clf=False, batch_size=b)

    yield "margin", "alamp_fast alamp (2nd query)", setup, run
    yield "coreset", "host", lambda: None, lambda _: CoreSet(random_state=0).query(
        X, y, batch_size=bc)
    yield "coreset", "alamp_fast", lambda: None, lambda _: integ.CoreSet().query(
        X, y, batch_size=bc)


def cases_baal(pool, b, bc):
    from baal.active import heuristics

    from alamp_fast.integrations import baal as integ

    P = pool.probs
    yield "margin", "host", lambda: None, lambda _: heuristics.Margin().get_ranks(P)[0][:b]
    yield "margin", "alamp_fast", lambda: None, lambda _: integ.Margin(b).get_ranks(P)[0]
    yield "margin", "alamp_fast (full ranking)", lambda: None, lambda _: integ.Margin(
    ).get_ranks(P)[0][:b]

    def setup():
        h = integ.Alamp(query_size=b)
        picks = h.get_ranks(P)[0]
        return h, np.delete(pool.probs_next, picks, axis=0)

    yield "margin", "alamp_fast alamp (2nd query)", setup, lambda a: a[0].get_ranks(a[1])[0]


def cases_small_text(pool, b, bc):
    from small_text import BreakingTies, GreedyCoreset

    from alamp_fast.integrations import small_text as integ

    stub = Stub(pool.probs, by_id=False)
    unl, lab = pool.unlabeled, pool.labeled
    y = lab % pool.probs.shape[1]
    yield "margin", "host", lambda: None, lambda _: BreakingTies().query(stub, None, unl, lab, y,
                                                                         n=b)
    yield "margin", "alamp_fast", lambda: None, lambda _: integ.MarginSampling().query(
        stub, None, unl, lab, y, n=b)

    def setup():
        qs = integ.Alamp()
        picks = qs.query(stub, None, unl, lab, y, n=b)
        return qs, np.setdiff1d(unl, picks), np.concatenate([lab, picks])

    def run(arg):
        qs, unl2, lab2 = arg
        return qs.query(Stub(pool.probs_next, by_id=False), None, unl2, lab2,
                        np.zeros(lab2.size, dtype=int), n=b)

    yield "margin", "alamp_fast alamp (2nd query)", setup, run
    # small-text wants the embeddings of dataset[unlabeled ++ labeled], in that order
    emb = pool.X[np.concatenate([unl, lab])]
    dataset = np.empty((pool.n, 0))
    for provider, qs in (("host", GreedyCoreset()), ("alamp_fast", integ.CoreSet())):
        yield "coreset", provider, lambda: None, lambda _, qs=qs: qs.query(
            None, dataset, unl, lab, y, n=bc, embeddings=emb, pbar=None)


CASES = {"modAL": cases_modal, "skactiveml": cases_skactiveml, "baal": cases_baal,
         "small_text": cases_small_text}


def same_picks(method, a, b):
    a, b = np.asarray(a), np.asarray(b)
    if method == "margin":  # hosts may return their picks unordered
        return bool(np.array_equal(np.sort(a), np.sort(b)))
    return bool(np.array_equal(a, b))


def run(args) -> dict:
    hosts = [h for h in args.hosts if importlib.util.find_spec(h) is not None]
    missing = sorted(set(args.hosts) - set(hosts))
    if missing:
        print(f"not installed, skipped: {', '.join(missing)}", file=sys.stderr)
    results, ratios = [], []
    warmup = Pool(1000, args.n_classes, args.n_features, args.n_labeled, seed=1)
    for host in hosts:
        for _, _, setup, fn in CASES[host](warmup, args.budget, args.coreset_budget):
            fn(setup())
    last_time: dict = {}
    for n in args.sizes:
        pool = Pool(n, args.n_classes, args.n_features, args.n_labeled)
        for host in hosts:
            picks = {}
            for method, provider, setup, fn in CASES[host](pool, args.budget, args.coreset_budget):
                key = (host, method, provider)
                row = {"host": host, "method": method, "provider": provider, "n_pool": n}
                if key in last_time:
                    prev_n, prev_s = last_time[key]
                    estimate = prev_s * n / prev_n
                    if estimate > args.max_seconds:
                        row["skipped"] = f"estimated {estimate:.0f} s > --max-seconds"
                        results.append(row)
                        print(f"{host:11s} {method:8s} n={n:>8d} {provider:45s} skipped")
                        continue
                out, timing = timed(setup, fn, args.repeats, args.max_seconds)
                row.update(timing, rows_per_s=n / timing["min_s"])
                results.append(row)
                last_time[key] = (n, timing["min_s"])
                picks[(method, provider)] = (out, timing["min_s"])
                print(f"{host:11s} {method:8s} n={n:>8d} {provider:45s} "
                      f"{timing['min_s'] * 1e3:10.2f} ms")
            for method in ("margin", "coreset"):
                if (method, "host") not in picks:
                    continue
                host_picks, host_s = picks[(method, "host")]
                for (m, provider), (ours, ours_s) in picks.items():
                    if m != method or provider == "host":
                        continue
                    ratio = {"host": host, "method": method, "n_pool": n, "provider": provider,
                             "host_min_s": host_s, "ours_min_s": ours_s,
                             "speedup": host_s / ours_s}
                    if "alamp (" not in provider:  # alamp picks other rows by design
                        ratio["same_picks"] = same_picks(method, host_picks, ours)
                    ratios.append(ratio)
    return {"results": results, "ratios": ratios}


def environment(args) -> dict:
    """Machine, versions (hosts included) and configuration, in the layout of
    ``alamp_fast.bench.environment`` (its ``commit`` is left to the recorded rerun)."""
    from importlib.metadata import PackageNotFoundError, version

    import numba

    versions = {"python": platform.python_version(), "alamp_fast": af.__version__}
    for dist in ("numpy", "numba", "scipy", "scikit-learn", "torch", *HOSTS.values()):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                       cpu)
    return {
        "commit": None,
        "device": {"kind": "cpu", "name": cpu, "cores": os.cpu_count(),
                   "numba_threads": numba.get_num_threads(),
                   # the machine may be shared: a load above the core count inflates every time
                   "load_average_at_start": os.getloadavg()},
        "platform": platform.platform(),
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {"sizes": args.sizes, "n_classes": args.n_classes,
                   "n_features": args.n_features, "n_labeled": args.n_labeled,
                   "budget": args.budget, "coreset_budget": args.coreset_budget,
                   "repeats": args.repeats, "max_seconds": args.max_seconds,
                   "probs_dtype": "float32", "quick": args.quick},
    }


def readme_table(report: dict) -> str:
    """Markdown table of the host/alamp_fast ratios (for ``benchmarks/make_readme.py``)."""
    rows = [
        "| host | method | pool rows | host ms | alamp_fast | alamp_fast ms | speed-up | same picks |",
        "|---|---|---:|---:|---|---:|---:|---|",
    ]
    for r in report["ratios"]:
        same = {True: "yes", False: "**no**"}.get(r.get("same_picks"), "-")
        rows.append(
            f"| {r['host']} | {r['method']} | {r['n_pool']:,} | {r['host_min_s'] * 1e3:.1f} | "
            f"{r['provider']} | {r['ours_min_s'] * 1e3:.1f} | {r['speedup']:.1f}x | {same} |"
        )
    skipped = [r for r in report["results"] if "skipped" in r]
    dev, cfg = report["device"], report["config"]
    rows.append("")
    rows.append(
        f"One query, stub model (strategy time only): {cfg['n_classes']} classes, "
        f"{cfg['n_features']} features, budget {cfg['budget']} (core-set {cfg['coreset_budget']}), "
        f"{cfg['n_labeled']} labeled; min of up to {cfg['repeats']} runs. alamp rows time the "
        f"second query against the host's margin. {len(skipped)} host runs skipped as too slow. "
        f"Machine: {dev['name']}, {dev['cores']} cores, load average "
        f"{dev['load_average_at_start'][0]:.1f} at start"
        + (" (**taken under load**)" if report.get("under_load") else "")
        + ". "
        "Source: `benchmarks/results/integrations.json`."
    )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    parser.add_argument("--hosts", nargs="+", default=list(HOSTS), choices=list(HOSTS))
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--n-labeled", type=int, default=100)
    parser.add_argument("--budget", type=int, default=100, help="rows per margin/alamp query")
    parser.add_argument("--coreset-budget", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="time budget per provider and size (repeats stop, sizes skipped)")
    parser.add_argument("--quick", action="store_true", help="pool 1e4, one repeat")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent / "results" / "integrations.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [1e4], 1
    args.sizes = [int(s) for s in args.sizes]
    warnings.simplefilter("ignore")  # hosts' deprecation chatter
    harness = Run("integrations", own_threads=1)
    record = environment(args)
    record.update(run(args))
    record["device"]["load_average_at_end"] = os.getloadavg()
    end = load_average()
    record["load_average"] = {"start": harness.load_start, "end": end}
    record["under_load"] = harness.under_load(end)
    print(f"[integrations] load average at end: {end}"
          + ("  -> figures taken UNDER LOAD" if record["under_load"] else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nspeedup = host time / alamp_fast time   (written to {args.out})")
    for r in record["ratios"]:
        agree = {True: "same picks", False: "DIFFERENT picks"}.get(r.get("same_picks"), "")
        print(f"{r['host']:11s} {r['method']:8s} n={r['n_pool']:>8d} {r['provider']:45s} "
              f"x{r['speedup']:8.1f}  {agree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
