"""Out-of-core pool on disk: score and select a batch in bounded memory, alone and on Dask.

A synthetic pool of ``n x classes`` float16 probabilities (default 1e8 x 100: 20 GB) and the
previous iteration's float32 margins are written to ``.npy`` files, then:

* ``read``: the probabilities file read once in 64 MiB blocks (the I/O ceiling);
* ``single``: :mod:`alamp_fast.outofcore` in one process: top-2 margins, alamp scores, a batch
  by ``select_top`` and one by ``diversify`` (pseudo-class = predicted class);
* ``dask``: the same through a ``LocalCluster`` of worker processes (one thread each) that
  read their chunks from the file (:func:`alamp_fast.distributed.from_memmap`); scores and
  predicted classes are persisted on the workers, then both batches are selected.

Each phase runs in a fresh process, so its peak RSS (``VmHWM``) is its own; for Dask the peaks
of the client (which hosts the scheduler) and of every worker are summed. The files are
dropped from the page cache before each phase (``posix_fadvise``), so reads come from disk
unless ``--warm``. Both selections must be identical across phases. Writes
``benchmarks/results/outofcore.json``.

    python benchmarks/bench_outofcore.py --quick          # 2e5 x 100, seconds
    python benchmarks/bench_outofcore.py --n 2e7          # 4 GB
    python benchmarks/bench_outofcore.py                  # the issue's 1e8 x 100 (20 GB)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _harness import Run, load_average

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 1 << 30
PEAK_LIMIT = 4 * GIB  # the bound for the whole computation


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM on Linux, ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def drop_from_page_cache(*paths: Path) -> None:
    """Ask the kernel to forget the files' cached pages, so the next read comes from disk."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_npy(path: Path, shape: tuple, dtype, blocks) -> None:
    """A ``.npy`` file written block by block (never the whole array in memory)."""
    with open(path, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": shape})
        for block in blocks:
            fh.write(np.ascontiguousarray(block, dtype=dtype).data)


def make_pool(folder: Path, n: int, classes: int, seed: int) -> tuple[Path, Path]:
    """probs.npy (float16, values in [0, 1)) and prev.npy (float32 margins in [0, 1))."""
    probs, prev = folder / f"probs_{n}x{classes}.npy", folder / f"prev_{n}.npy"
    if probs.exists() and prev.exists():
        try:
            ok = np.load(probs, mmap_mode="r").shape == (n, classes)
        except ValueError:
            ok = False
        if ok:
            return probs, prev
    rng = np.random.default_rng(seed)
    rows = max(1, (32 << 20) // (2 * classes))

    def prob_blocks():
        for start in range(0, n, rows):
            k = min(rows, n - start)
            # random float16 bit patterns below 0x3C00 (= 1.0): every value in [0, 1) occurs,
            # from 6e-8 up, without a float32 draw per element
            yield rng.integers(0, 0x3C00, (k, classes), dtype=np.uint16).view(np.float16)

    def prev_blocks():
        for start in range(0, n, 1 << 22):
            yield rng.random(min(1 << 22, n - start), dtype=np.float32)

    write_npy(probs, (n, classes), np.float16, prob_blocks())
    write_npy(prev, (n,), np.float32, prev_blocks())
    return probs, prev


def warm_up(classes: int) -> None:
    """Compile or load every kernel, serial and parallel builds, outside the timings."""
    import alamp_fast as af

    rng = np.random.default_rng(0)
    for n in (1000, 300_000):  # below and above the parallel threshold
        m, top = af.top2_margin(rng.random((n, classes), dtype=np.float32).astype(np.float16))
        s = af.alamp_score(rng.random(n, dtype=np.float32), m)
        af.select_top(s, 10)
        af.diversify(s, top, 10)


# ----------------------------------------------------------------------------- phases
# Each runs in its own process (``--phase``) and prints one JSON object.


def phase_read(args) -> dict:
    from alamp_fast import outofcore as oc

    P = np.load(args.probs, mmap_mode="r")
    t0 = time.perf_counter()
    checksum = 0
    for _, block in oc._row_blocks(P, max(1, (64 << 20) // (2 * P.shape[1]))):
        checksum += int(block[-1, -1].view(np.uint16))  # touch the block
    return {"read_s": time.perf_counter() - t0, "peak_rss_bytes": peak_rss_bytes()}


def phase_single(args) -> dict:
    from alamp_fast import outofcore as oc

    P = np.load(args.probs, mmap_mode="r")
    prev = np.load(args.prev, mmap_mode="r")
    warm_up(P.shape[1])
    times = {}
    t0 = time.perf_counter()
    margin, top = oc.top2_margin(P, block_rows=args.block_rows)
    times["top2_margin_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    scores = oc.alamp_score(prev, margin, block_rows=args.block_rows)
    times["alamp_score_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sel = oc.select_top(scores, args.b, block_rows=args.block_rows)
    times["select_top_s"] = time.perf_counter() - t
    t = time.perf_counter()
    div = oc.diversify(scores, top, args.b, block_rows=args.block_rows)
    times["diversify_s"] = time.perf_counter() - t
    times["total_s"] = time.perf_counter() - t0
    return {
        **times,
        "peak_rss_bytes": peak_rss_bytes(),
        "select_top": sel.tolist(),
        "diversify": div.tolist(),
    }


def phase_dask(args) -> dict:
    from distributed import wait

    import alamp_fast as af
    from alamp_fast.distributed import from_memmap, get_client

    with get_client(n_workers=args.workers, threads_per_worker=1) as client:
        client.wait_for_workers(args.workers)
        P = from_memmap(np.load(args.probs, mmap_mode="r"), chunk_rows=args.chunk_rows)
        prev = from_memmap(np.load(args.prev, mmap_mode="r"), chunk_rows=P.chunks[0][0])
        client.run(warm_up, P.shape[1])
        # and the task path (imports, the executor thread's first parallel launch)
        m, top = af.top2_margin(P[:2000])
        af.diversify(af.alamp_score(prev[:2000], m), top, 10)
        times = {}
        t0 = time.perf_counter()
        margin, top = af.top2_margin(P)
        scores, top = client.persist([af.alamp_score(prev, margin), top])
        wait([scores, top])
        times["score_and_persist_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        sel = af.select_top(scores, args.b)
        times["select_top_s"] = time.perf_counter() - t
        t = time.perf_counter()
        div = af.diversify(scores, top, args.b)
        times["diversify_s"] = time.perf_counter() - t
        times["total_s"] = time.perf_counter() - t0
        workers = client.run(peak_rss_bytes)
        client_peak = peak_rss_bytes()
    return {
        **times,
        "chunks": len(P.chunks[0]),
        "chunk_rows": int(P.chunks[0][0]),
        "peak_rss_bytes": client_peak + sum(workers.values()),
        "peak_rss_client_and_scheduler_bytes": client_peak,
        "peak_rss_worker_bytes": sorted(workers.values()),
        "select_top": sel.tolist(),
        "diversify": div.tolist(),
    }


PHASES = {"read": phase_read, "single": phase_single, "dask": phase_dask}


def run_phase(name: str, args) -> dict:
    """``name`` in a fresh interpreter (its own peak RSS), after a page-cache drop."""
    if not args.warm:
        drop_from_page_cache(args.probs, args.prev)
    cmd = [sys.executable, __file__, "--phase", name, "--probs", str(args.probs)]
    cmd += ["--prev", str(args.prev), "--b", str(args.b), "--workers", str(args.workers)]
    for flag in ("block_rows", "chunk_rows"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=lambda s: int(float(s)), default=None, help="rows (default 1e8)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--b", type=int, default=1000, help="batch size")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    p.add_argument("--block-rows", type=int, default=None, help="out-of-core block rows")
    p.add_argument("--chunk-rows", type=int, default=None, help="Dask chunk rows")
    p.add_argument("--dir", type=Path, default=None, help="folder for the pool files")
    p.add_argument("--keep", action="store_true", help="keep (and reuse) the pool files")
    p.add_argument("--warm", action="store_true", help="do not drop the files from the cache")
    p.add_argument("--no-dask", action="store_true", help="skip the LocalCluster phase")
    p.add_argument("--quick", action="store_true", help="2e5 rows: a smoke test in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out", type=Path, default=None, help="default results/outofcore.json (quick: _quick)"
    )
    p.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    p.add_argument("--probs", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--prev", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return 0

    n = args.n if args.n is not None else (200_000 if args.quick else 100_000_000)
    if n < 1 or args.classes < 2 or args.b < 1 or args.b > n:
        p.error(f"need n >= 1, classes >= 2 and 1 <= b <= n; got {n}, {args.classes}, {args.b}")
    folder = args.dir or Path(tempfile.gettempdir()) / "alamp_fast_outofcore"
    folder.mkdir(parents=True, exist_ok=True)
    need = n * (2 * args.classes + 4)
    free = shutil.disk_usage(folder).free
    have = sum(
        f.stat().st_size
        for f in (folder / f"probs_{n}x{args.classes}.npy", folder / f"prev_{n}.npy")
        if f.exists()
    )
    if need > free + have - (1 << 30):
        p.error(
            f"the pool needs {need / 1e9:.1f} GB in {folder} but only {free / 1e9:.1f} GB are "
            f"free (keeping 1 GB spare); pick a smaller --n or another --dir"
        )

    from alamp_fast.bench import environment

    # prints the load average now; the end's is printed and both are recorded below
    run = Run("outofcore", own_threads=args.workers)
    report = {**environment(), "load_average_at_start": run.load_start}
    t = time.perf_counter()
    args.probs, args.prev = make_pool(folder, n, args.classes, args.seed)
    nbytes = args.probs.stat().st_size
    print(
        f"pool: {n} x {args.classes} float16, {nbytes / 1e9:.2f} GB in {args.probs} "
        f"({time.perf_counter() - t:.0f} s to write or find)",
        flush=True,
    )
    try:
        phases = {"read": run_phase("read", args), "single": run_phase("single", args)}
        if not args.no_dask:
            phases["dask"] = run_phase("dask", args)
    finally:
        if not args.keep:
            args.probs.unlink(missing_ok=True)
            args.prev.unlink(missing_ok=True)

    single = phases["single"]
    summary = {
        "read_gb_per_s": nbytes / phases["read"]["read_s"] / 1e9,
        "single_score_gb_per_s": nbytes / single["top2_margin_s"] / 1e9,
        "single_end_to_end_gb_per_s": nbytes / single["total_s"] / 1e9,
        "single_peak_rss_gib": single["peak_rss_bytes"] / GIB,
        "single_under_4gib": single["peak_rss_bytes"] < PEAK_LIMIT,
    }
    if "dask" in phases:
        d = phases["dask"]
        summary.update(
            dask_score_gb_per_s=nbytes / d["score_and_persist_s"] / 1e9,
            dask_end_to_end_gb_per_s=nbytes / d["total_s"] / 1e9,
            dask_peak_rss_gib=d["peak_rss_bytes"] / GIB,
            dask_under_4gib=d["peak_rss_bytes"] < PEAK_LIMIT,
            dask_identical=d["select_top"] == single["select_top"]
            and d["diversify"] == single["diversify"],
        )
    report.update(
        config={
            "n": n,
            "classes": args.classes,
            "dtype": "float16",
            "probs_bytes": nbytes,
            "b": args.b,
            "block_rows": args.block_rows,
            "workers": args.workers,
            "threads_per_worker": 1,
            "page_cache": "warm" if args.warm else "dropped before each phase",
            "quick": args.quick,
        },
        summary=summary,
        phases={
            k: {kk: vv for kk, vv in v.items() if kk not in ("select_top", "diversify")}
            for k, v in phases.items()
        },
        selection_head={
            "select_top": single["select_top"][:10],
            "diversify": single["diversify"][:10],
        },
    )
    load_end = load_average()
    report.update(
        load_average_at_end=load_end,
        load_average={"start": run.load_start, "end": load_end},
        under_load=run.under_load(load_end),
    )
    args.out = args.out or RESULTS / ("outofcore_quick.json" if args.quick else "outofcore.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for k, v in summary.items():
        print(f"{k:>28}: {v:.3f}" if isinstance(v, float) else f"{k:>28}: {v}")
    print(f"wrote {args.out}")
    print(f"[outofcore] load average at end: {load_end}"
          + ("  -> figures taken UNDER LOAD" if report["under_load"] else ""))
    if "dask" in phases and not summary["dask_identical"]:
        print("ERROR: the Dask selections differ from the single-process ones", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
