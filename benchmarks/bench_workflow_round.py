"""Issue 16's acceptance, measured: today's code against a baseline commit, in one run.

Three parts, each run for both versions in fresh subprocesses (same interpreter, same venv;
the version is picked by ``PYTHONPATH``, checked by the child from ``alamp_fast.__file__``):

(a) workflow round at ``--rows`` (200,000) x ``--dim`` (512, as the issue's pool), ``--classes``
    (10) classes, budget ``--budget`` (500): ``Project.init``, the random first
    round, then ``--rounds`` strategy rounds with the true labels fed back through
    ``Project.label``. Per round: ``select`` time and the classifier's pool-scoring work,
    counted by wrapping the classifier that ``alamp_fast.al.protocol.make_classifier`` returns
    (outermost calls of ``predict_proba`` / ``decision_function`` / ``predict_top2_margin`` /
    ``_proba_chunks`` on more rows than are labeled; ``passes`` = rows scored / pool rows).
(b) big pool, ``--big-rows`` (1e6) x ``--big-dim`` (512) float32 ``.npy``, ``--big-classes``
    (100) classes, budget ``--big-budget`` (2,000): every ``select`` runs in its own
    subprocess (wall with start-up, peak RSS from ``os.wait4``). The first, random round's wall
    (target < 3 s), a strategy round's in-process ``select`` time (median of ``--repeats``
    runs on copies of the project) against (classifier fit +
    one scoring pass over the pool, read and normalised chunk by chunk + the strategy's
    selection) measured with today's code in the same run (target <= 1.5x), and ``select``'s
    peak RSS against the pool file's size (target < 1.3x).
(c) ``simulate`` (the Python API, one run, one strategy, ``--sim-iterations`` rounds) at
    ``--sim-rows`` (1e6) x ``--sim-dim`` with ``--sim-classes`` classes: peak RSS new vs old
    (target: new < half of old).

Numba caches of both versions are warmed first by a small round (so start-up is what a user
sees after the first use). The machine's load average is recorded at start and end
(``_harness.Run``); figures taken on a shared, loaded machine are marked ``under_load``.

    python benchmarks/bench_workflow_round.py                     # full sizes (~GBs of disk)
    python benchmarks/bench_workflow_round.py --quick             # minutes: reduced sizes
    python benchmarks/bench_workflow_round.py --baseline-root DIR # an existing checkout

Writes ``benchmarks/results/workflow_round.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINE_COMMIT = "6c65c63"

# --------------------------------------------------------------------------- child side


def _check_version(root: str) -> None:
    import alamp_fast

    got = Path(alamp_fast.__file__).resolve().parent.parent
    if got != Path(root).resolve():
        raise SystemExit(f"child imported alamp_fast from {got}, expected {root}")


def _al_module(name: str):
    """``alamp_fast.al.<name>``, or the flat ``alamp_fast.<name>`` of a version before the AL room
    (the baseline commit this benchmark compares with)."""
    import importlib

    import alamp_fast

    # decided by the imported package's own files: with an editable install of the current
    # tree, ``import alamp_fast.al`` would otherwise find the current tree's room from a
    # baseline package that has none
    if (Path(alamp_fast.__file__).parent / "al").is_dir():
        return importlib.import_module(f"alamp_fast.al.{name}")
    return importlib.import_module(f"alamp_fast.{name}")


class _Counter:
    """Counts the pool-scoring work of every classifier ``make_classifier`` returns."""

    METHODS = ("predict_proba", "decision_function", "predict_top2_margin", "_proba_chunks")

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.depth = 0
        self.min_rows = 0  # calls on more rows than this count (set to the labeled count)

    def install(self) -> None:
        protocol = _al_module("protocol")

        make = protocol.make_classifier
        counter = self

        def make_counted(*args, **kwargs):
            clf = make(*args, **kwargs)
            for name in counter.METHODS:
                if hasattr(clf, name):
                    setattr(clf, name, counter._wrap(name, getattr(clf, name)))
            return clf

        protocol.make_classifier = make_counted

    def _record(self, name, X) -> None:
        n = int(getattr(X, "shape", (0,))[0])
        if n > self.min_rows:
            self.calls.append((name, n))

    def _wrap(self, name, f):
        counter = self
        if name == "_proba_chunks":

            def gen(X, *a, **k):
                outer = counter.depth == 0
                counter.depth += 1
                try:
                    yield from f(X, *a, **k)
                finally:
                    counter.depth -= 1
                if outer:
                    counter._record(name, X)

            return gen

        def call(X, *a, **k):
            outer = counter.depth == 0
            counter.depth += 1
            try:
                return f(X, *a, **k)
            finally:
                counter.depth -= 1
                if outer:
                    counter._record(name, X)

        return call

    def take(self, n_pool: int) -> dict:
        calls, self.calls = self.calls, []
        return {
            "scoring_calls": len(calls),
            "passes": round(sum(n for _, n in calls) / n_pool, 3),
            "methods": sorted({m for m, _ in calls}),
        }


def _label_batch(project, batch, y_true, classes) -> None:
    rows = [int(i) for i in batch.ids]  # ids are the row numbers (no ids file)
    project.label({str(r): classes[int(y_true[r])] for r in rows})


def child_round(spec: dict) -> dict:
    """(a): init, the first round, ``rounds`` strategy rounds, in one process."""
    _check_version(spec["root"])
    counter = _Counter()
    counter.install()
    from alamp_fast.workflow import Project

    y_true = np.load(spec["labels"])
    n_pool = y_true.size
    classes = [f"c{i}" for i in range(spec["classes"])]
    t = time.perf_counter()
    p = Project.init(
        spec["project"], spec["pool"], classes=classes, budget=spec["budget"],
        strategy=spec["strategy"], seed=0,
    )
    init_s = time.perf_counter() - t
    rounds = []
    for r in range(spec["rounds"] + 1):
        counter.min_rows = int((p.labels_array() >= 0).sum()) if r else 0
        t = time.perf_counter()
        batch = p.select()
        dt = time.perf_counter() - t
        rounds.append({"round": r + 1, "select_s": round(dt, 3), **counter.take(n_pool)})
        _label_batch(p, batch, y_true, classes)
    return {"init_s": round(init_s, 3), "rounds": rounds}


def child_init(spec: dict) -> dict:
    _check_version(spec["root"])
    from alamp_fast.workflow import Project

    t = time.perf_counter()
    Project.init(
        spec["project"], spec["pool"], classes=[f"c{i}" for i in range(spec["classes"])],
        budget=spec["budget"], strategy=spec["strategy"], seed=0,
    )
    return {"init_s": round(time.perf_counter() - t, 3)}


def child_select(spec: dict) -> dict:
    _check_version(spec["root"])
    from alamp_fast.workflow import Project

    out = {}
    if spec.get("preimport"):
        # the classifier's modules (scikit-learn) imported before the clock starts, as in
        # child_reference: the ratio then compares the round's work, not import time
        t = time.perf_counter()
        _al_module("protocol")

        out["preimport_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    p = Project.open(spec["project"])
    batch = p.select()
    dt = time.perf_counter() - t
    return {**out, "select_s": round(dt, 3), "size": len(batch)}


def child_label(spec: dict) -> dict:
    _check_version(spec["root"])
    from alamp_fast.workflow import Project

    p = Project.open(spec["project"])
    y_true = np.load(spec["labels"], mmap_mode="r")
    _label_batch(p, p.batch(p.rounds), y_true, [f"c{i}" for i in range(spec["classes"])])
    return {}


def child_reference(spec: dict) -> dict:
    """The needed work of a strategy round, with today's code: fit + one pass + selection."""
    _check_version(spec["root"])
    import warnings

    from alamp_fast.workflow import Project

    make_classifier = _al_module("protocol").make_classifier
    get_strategy = _al_module("strategies").get_strategy

    p = Project.open(spec["project"])
    y = p.labels_array()
    labeled = np.flatnonzero(y >= 0)
    n_classes = spec["classes"]
    X = np.load(spec["pool"], mmap_mode="r")
    out = {}
    t = time.perf_counter()
    Xl = np.asarray(X[labeled], dtype=np.float32)
    Xl /= np.maximum(np.linalg.norm(Xl, axis=1, keepdims=True), 1e-12)
    clf = make_classifier("linear-svc", cost_sensitive=False, random_state=0, prenormalized=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(Xl, y[labeled])
    out["fit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    cols = np.asarray(clf.classes_, dtype=np.int64)
    probs = np.zeros((X.shape[0], n_classes), dtype=np.float32)
    step = 65536
    for a in range(0, X.shape[0], step):
        c = np.array(X[a : a + step], dtype=np.float32)
        c /= np.maximum(np.sqrt(np.einsum("ij,ij->i", c, c))[:, None], 1e-12)
        probs[a : a + c.shape[0], cols] = clf.predict_proba(c)
    out["score_s"] = time.perf_counter() - t
    t = time.perf_counter()
    strategy = get_strategy(spec["strategy"])
    strategy.query_result(probs, spec["budget"], labeled=labeled, features=None)
    out["selection_s"] = time.perf_counter() - t
    out = {k: round(v, 3) for k, v in out.items()}
    out["needed_s"] = round(out["fit_s"] + out["score_s"] + out["selection_s"], 3)
    return out


def child_simulate(spec: dict) -> dict:
    _check_version(spec["root"])
    simulate = _al_module("protocol").simulate

    X = np.load(spec["pool"])
    y = np.load(spec["labels"])
    Xt = np.load(spec["test"])
    yt = np.load(spec["test_labels"])
    t = time.perf_counter()
    res = simulate(
        X, y, Xt, yt, strategies=("alamp",), init=spec["step"], step=spec["step"],
        iterations=spec["iterations"], runs=1, seed=0,
    )
    dt = time.perf_counter() - t
    acc = getattr(res, "accuracy", None)
    return {"simulate_s": round(dt, 3),
            "accuracy_shape": list(np.shape(acc)) if acc is not None else None}


CHILDREN = {
    "round": child_round, "init": child_init, "select": child_select, "label": child_label,
    "reference": child_reference, "simulate": child_simulate,
}

# --------------------------------------------------------------------------- parent side


def _own_peak_rss_mb() -> float | None:
    """This process's peak resident set (``VmHWM``: of its own address space since exec).

    ``ru_maxrss`` of a child is no good here: Linux carries the parent's high-water mark
    across fork + exec, so a child started by a parent that had generated a 2 GB pool would
    report at least the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def run_child(task: str, root: Path, **spec) -> dict:
    """Run one child; its JSON result plus ``wall_s`` and ``peak_rss_mb`` (the child's
    ``VmHWM`` on Linux, else ``ru_maxrss`` from os.wait4, which may include the parent's)."""
    spec = {"root": str(root), **{k: str(v) if isinstance(v, Path) else v
                                  for k, v in spec.items()}}
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", task, json.dumps(spec)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(root),
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    # communicate() reaped the child: take its own rusage from /proc-free wait4 bookkeeping
    rss_kb = _last_rss.pop(proc.pid, None)
    if proc.returncode != 0:
        raise RuntimeError(
            f"child {task} ({root}) failed:\n{err.decode(errors='replace')[-3000:]}"
        )
    res = json.loads(out.decode().strip().splitlines()[-1])
    res["wall_s"] = round(wall, 3)
    if rss_kb is not None and "peak_rss_mb" not in res:
        res["peak_rss_mb"] = round(rss_kb / 1024, 1)
        res["peak_rss_source"] = "ru_maxrss (may include the parent's high-water mark)"
    return res


_last_rss: dict[int, int] = {}


def _install_wait4() -> None:
    """Make subprocess reap children with os.wait4, keeping each child's own peak RSS."""
    real_waitpid = os.waitpid

    def waitpid(pid, options):
        if pid > 0:
            got, status, usage = os.wait4(pid, options)
            if got:
                _last_rss[got] = usage.ru_maxrss
            return got, status
        return real_waitpid(pid, options)

    subprocess.os.waitpid = waitpid  # type: ignore[attr-defined]
    os.waitpid = waitpid


def make_pool(path: Path, labels: Path, n: int, d: int, classes: int, seed: int) -> None:
    """Gaussian blobs, written chunk by chunk (never the whole pool in memory)."""
    if path.exists() and labels.exists():
        return
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    step = 65536
    for a in range(0, n, step):
        yy = y[a : a + step]
        X[a : a + yy.size] = centers[yy] + 2.0 * rng.standard_normal(
            (yy.size, d), dtype=np.float32
        )
    X.flush()
    del X
    np.save(labels, y)


def ensure_baseline(args) -> Path:
    if args.baseline_root:
        return Path(args.baseline_root)
    root = Path(tempfile.gettempdir()) / f"alamp_fast_baseline_{args.baseline}"
    if not (root / "alamp_fast").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(root), args.baseline],
            check=True,
        )
    return root


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("TASK", "SPEC"), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", default=BASELINE_COMMIT, help="baseline commit")
    ap.add_argument("--baseline-root", help="an existing checkout of the baseline")
    ap.add_argument("--quick", action="store_true", help="reduced sizes (minutes)")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3, help="strategy rounds in (a)")
    ap.add_argument("--strategy", default="alamp")
    ap.add_argument("--repeats", type=int, default=3,
                    help="repetitions of (a) and of (b)'s strategy round and reference")
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--big-dim", type=int, default=512)
    ap.add_argument("--big-classes", type=int, default=100)
    ap.add_argument("--big-budget", type=int, default=2000)
    ap.add_argument("--sim-rows", type=int, default=1_000_000)
    ap.add_argument("--sim-dim", type=int, default=64)
    ap.add_argument("--sim-classes", type=int, default=100)
    ap.add_argument("--sim-step", type=int, default=500)
    ap.add_argument("--sim-iterations", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    ap.add_argument("--workdir", help="where pools and projects go (default: a temp dir)")
    ap.add_argument("--out", default=str(HERE / "results" / "workflow_round.json"))
    args = ap.parse_args(argv)

    if args.child:
        task, spec = args.child
        res = CHILDREN[task](json.loads(spec))
        hwm = _own_peak_rss_mb()
        if hwm is not None:
            res["peak_rss_mb"] = hwm
        print(json.dumps(res))
        return 0

    if args.quick:
        args.rows, args.big_rows, args.sim_rows = 50_000, 200_000, 200_000
        args.big_budget, args.budget = 1000, 300
    sys.path.insert(0, str(HERE))
    from _harness import Run

    _install_wait4()
    skip = set(filter(None, args.skip.split(",")))
    run = Run("workflow_round", own_threads=1)
    baseline = ensure_baseline(args)
    versions = {"new": ROOT, "old": baseline}
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="af_round_"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"baseline_commit": args.baseline, "sizes": {
        k: getattr(args, k) for k in (
            "rows", "dim", "classes", "budget", "rounds", "strategy", "big_rows", "big_dim",
            "big_classes", "big_budget", "sim_rows", "sim_dim", "sim_classes", "sim_step",
            "sim_iterations")}}

    # warm both versions' numba caches with a small round
    make_pool(work / "warm.npy", work / "warm_y.npy", 5000, 16, 4, 1)
    for name, root in versions.items():
        t = time.perf_counter()
        run_child("round", root, project=work / f"warm_{name}_{time.time_ns()}",
                  pool=work / "warm.npy", labels=work / "warm_y.npy", classes=4,
                  budget=100, rounds=1, strategy=args.strategy)
        print(f"warm-up {name}: {time.perf_counter() - t:.1f} s", flush=True)

    if "a" not in skip:
        pool, lab = work / "a_pool.npy", work / "a_y.npy"
        make_pool(pool, lab, args.rows, args.dim, args.classes, 2)
        part = {k: [] for k in versions}
        for rep in range(args.repeats):  # the versions alternate: both see the same load drift
            for name, root in versions.items():
                r = run_child(
                    "round", root, project=work / f"a_{name}_{time.time_ns()}", pool=pool,
                    labels=lab, classes=args.classes, budget=args.budget, rounds=args.rounds,
                    strategy=args.strategy)
                part[name].append(r)
                print(f"(a) {name} #{rep}: {r}", flush=True)

        def strat_times(runs):
            return [x["select_s"] for r in runs for x in r["rounds"][1:]]

        part["strategy_round_s"] = {
            k: round(float(np.median(strat_times(part[k]))), 3) for k in versions}
        part["strategy_round_s_all"] = {k: strat_times(part[k]) for k in versions}
        part["speedup_old_over_new"] = round(
            part["strategy_round_s"]["old"] / part["strategy_round_s"]["new"], 2)
        part["scoring_calls_per_strategy_round"] = {
            k: [x["scoring_calls"] for r in part[k] for x in r["rounds"][1:]] for k in versions}
        part["targets"] = {
            "one_scoring_call": all(
                c == 1 for c in part["scoring_calls_per_strategy_round"]["new"]),
            "speedup_at_least_2x": part["speedup_old_over_new"] >= 2.0,
        }
        results["a_workflow_round"] = part

    if "b" not in skip:
        pool, lab = work / "b_pool.npy", work / "b_y.npy"
        t = time.perf_counter()
        make_pool(pool, lab, args.big_rows, args.big_dim, args.big_classes, 3)
        print(f"(b) pool ready in {time.perf_counter() - t:.1f} s", flush=True)
        size_mb = pool.stat().st_size / 2**20
        part = {"pool_file_mb": round(size_mb, 1)}
        for name, root in versions.items():
            proj = work / f"b_{name}_{time.time_ns()}"
            common = dict(project=proj, pool=pool, labels=lab, classes=args.big_classes,
                          budget=args.big_budget, strategy=args.strategy)
            r = {"init": run_child("init", root, **common)}
            r["first_round"] = run_child("select", root, **common)
            run_child("label", root, **common)
            if name == "new":
                # the same strategy round on copies of the project, alternating with the
                # reference, so both see the same load; medians below
                r["strategy_rounds"], r["references"] = [], []
                for rep in range(args.repeats):
                    copy = work / f"{proj.name}_rep{rep}"
                    shutil.copytree(proj, copy)
                    r["strategy_rounds"].append(
                        run_child("select", root, preimport=True, **{**common, "project": copy}))
                    r["references"].append(
                        run_child("reference", root, **{**common, "project": copy}))
                    shutil.rmtree(copy)
            else:
                r["strategy_rounds"] = [run_child("select", root, preimport=True, **common)]
            part[name] = r
            print(f"(b) {name}: {r}", flush=True)
        new = part["new"]
        sel = float(np.median([x["select_s"] for x in new["strategy_rounds"]]))
        needed = float(np.median([x["needed_s"] for x in new["references"]]))
        ratio = sel / needed
        part["strategy_round_select_s_median"] = round(sel, 3)
        part["needed_s_median"] = round(needed, 3)
        part["old_strategy_round_select_s"] = part["old"]["strategy_rounds"][0]["select_s"]
        peak = max([new["first_round"]["peak_rss_mb"]]
                   + [x["peak_rss_mb"] for x in new["strategy_rounds"]])
        part["strategy_round_over_needed"] = round(ratio, 2)
        part["select_peak_over_pool_file"] = round(peak / size_mb, 2)
        part["targets"] = {
            "first_round_wall_under_3s": new["first_round"]["wall_s"] < 3.0,
            "strategy_round_within_1.5x_needed": ratio <= 1.5,
            "select_peak_under_1.3x_file": peak / size_mb < 1.3,
        }
        results["b_big_pool"] = part

    if "c" not in skip:
        pool, lab = work / "c_pool.npy", work / "c_y.npy"
        test, tlab = work / "c_test.npy", work / "c_test_y.npy"
        make_pool(pool, lab, args.sim_rows, args.sim_dim, args.sim_classes, 4)
        make_pool(test, tlab, 2000, args.sim_dim, args.sim_classes, 4)
        part = {}
        for name, root in versions.items():
            part[name] = run_child(
                "simulate", root, pool=pool, labels=lab, test=test, test_labels=tlab,
                step=args.sim_step, iterations=args.sim_iterations)
            print(f"(c) {name}: {part[name]}", flush=True)
        part["peak_new_over_old"] = round(
            part["new"]["peak_rss_mb"] / part["old"]["peak_rss_mb"], 3)
        part["targets"] = {"simulate_peak_under_half_of_old": part["peak_new_over_old"] < 0.5}
        results["c_simulate"] = part

    run.write(
        results, path=Path(args.out),
        note=("shared machine: other agents' jobs were running; times are taken under load "
              "(see load_average); ratios compare versions run back to back in this run"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
