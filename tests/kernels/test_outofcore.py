"""Out-of-core pools: blockwise results identical to the in-memory calls, in bounded memory.

Pools are ``np.memmap`` files (read through the file), memmap views and copy-on-write maps
(sliced), and in-memory arrays; block sizes are uneven, down to one row, with ties and
excluded rows, so block boundaries cut through runs of equal scores.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_exact

import alamp_fast as af
from alamp_fast import outofcore as oc

SOURCES = ["file", "view", "copy-on-write", "memory"]


def pool(x: np.ndarray, source: str, tmp_path, name: str = "pool"):
    """``x`` as the given kind of pool; the file-backed ones hold exactly ``x``."""
    if source == "memory":
        return x
    path = tmp_path / f"{name}.npy"
    if source == "view":  # one extra row in front: the view is a slice, not the whole map
        np.save(path, np.concatenate([x[:1], x]))
        return np.load(path, mmap_mode="r")[1:]
    np.save(path, x)
    return np.load(path, mmap_mode="c" if source == "copy-on-write" else "r")


def tied_scores(rng, n: int, dtype) -> np.ndarray:
    return rng.choice(np.array([-1.5, 0.0, 0.25, 2.0]), n).astype(dtype)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_scoring_is_identical(rng, tmp_path, source, dtype):
    n, C = 1001, 6
    P = (rng.integers(0, 5, (n, C)) / 4).astype(dtype)  # quarters: tied top-2 values
    Pp = pool(P, source, tmp_path)
    assert (oc.file_source(Pp) is not None) == (source == "file")
    want_m, want_top = af.top2_margin(P)
    for block_rows in (1, 7, 250, n + 5, None):
        m, top = oc.top2_margin(Pp, block_rows=block_rows)
        assert_exact(m, want_m, f"margin, block_rows={block_rows}", dtype=want_m.dtype)
        assert_exact(top, want_top, f"top_class, block_rows={block_rows}", dtype=np.int64)
    for fn, ref in ((oc.entropy, af.entropy), (oc.least_confidence, af.least_confidence)):
        want = ref(P)
        assert_exact(fn(Pp, block_rows=97), want, fn.__name__, dtype=want.dtype)


def test_scoring_into_memmaps_and_alamp(rng, tmp_path):
    n = 3000
    P = rng.random((n, 5)).astype(np.float16)
    Pp = pool(P, "file", tmp_path)
    margin = np.lib.format.open_memmap(tmp_path / "m.npy", "w+", np.float32, (n,))
    top = np.lib.format.open_memmap(tmp_path / "t.npy", "w+", np.int64, (n,))
    got = oc.top2_margin(Pp, block_rows=512, out=(margin, top))
    assert got[0] is margin and got[1] is top
    want_m, want_top = af.top2_margin(P)
    assert_exact(np.load(tmp_path / "m.npy"), want_m, "margin file")  # flushed by the close
    assert_exact(top, want_top, "top_class")
    prev = pool(rng.random(n).astype(np.float16), "file", tmp_path, "prev")
    want = af.alamp_score(np.asarray(prev), want_m)
    assert_exact(oc.alamp_score(prev, margin, block_rows=333), want, "alamp", dtype=np.float32)
    with pytest.raises(ValueError, match=r"out for margin must be a \(3000,\) float32 array"):
        oc.top2_margin(Pp, out=(np.empty(n), top))
    with pytest.raises(ValueError, match="prev_margin has 2999 samples but margin has 3000"):
        oc.alamp_score(prev[1:], margin)


@pytest.mark.parametrize("source", ["file", "view", "memory"])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64])
def test_select_top_is_identical(rng, tmp_path, source, largest, dtype):
    n = 1500
    s = pool(
        tied_scores(rng, n, np.float64).astype(dtype) * (4 if dtype == np.int64 else 1),
        source,
        tmp_path,
    )
    ref = np.asarray(s)
    ex = rng.choice(n, 400, replace=False)
    free = n - ex.size
    for b in (0, 1, 17, free // 2, free):
        for block_rows in (3, 64, 999):
            got = oc.select_top(s, b, exclude=ex, largest=largest, block_rows=block_rows)
            want = af.select_top(ref, b, exclude=ex, largest=largest)
            assert_exact(got, want, f"b={b}, block_rows={block_rows}", dtype=np.int64)
    mask = np.zeros(n, dtype=bool)
    mask[ex] = True
    want = af.select_top(ref, 30, exclude=mask, largest=largest)
    assert_exact(oc.select_top(s, 30, exclude=mask, largest=largest, block_rows=100), want)


@pytest.mark.parametrize("labels", ["dense", "sparse-negative", "one-class"])
@pytest.mark.parametrize("largest", [True, False])
def test_diversify_is_identical(rng, tmp_path, labels, largest):
    n = 1500
    s = pool(tied_scores(rng, n, np.float32), "file", tmp_path, "scores")
    if labels == "dense":  # one large class and small ones: passes end at different depths
        pc = np.where(rng.random(n) < 0.6, 0, rng.integers(1, 6, n)).astype(np.int32)
    elif labels == "sparse-negative":
        pc = rng.choice(np.array([-(10**12), -3, 7, 10**15]), n)
    else:
        pc = np.full(n, 4)
    pcp = pool(pc, "file", tmp_path, "pc")
    ex = rng.choice(n, 300, replace=False)
    free = n - ex.size
    for b in (0, 1, 4, 5, 37, free // 2, free):
        for block_rows in (3, 50, 700):
            got = oc.diversify(s, pcp, b, exclude=ex, largest=largest, block_rows=block_rows)
            want = af.diversify(np.asarray(s), pc, b, exclude=ex, largest=largest)
            assert_exact(got, want, f"b={b}, block_rows={block_rows}", dtype=np.int64)


def test_errors_name_the_bad_value(rng, tmp_path):
    P = rng.random((500, 4)).astype(np.float32)
    P[321, 2] = np.nan
    Pp = pool(P, "file", tmp_path)
    with pytest.raises(ValueError, match=r"pool rows 300:400 .*probs\[21, 2\] = nan"):
        oc.top2_margin(Pp, block_rows=100)
    s = pool(P[:, 2].copy(), "file", tmp_path, "s")
    with pytest.raises(ValueError, match=r"pool rows 320:330 .*scores\[1\] = nan"):
        oc.select_top(s, 3, block_rows=10)
    good = rng.random(500)
    with pytest.raises(ValueError, match="budget b=499 exceeds the 498 candidates"):
        oc.select_top(good, 499, exclude=[1, 2])
    with pytest.raises(TypeError, match="pseudo_class must be an integer array"):
        oc.diversify(good, np.zeros(500), 3)
    with pytest.raises(ValueError, match="pseudo_class has 499 entries but scores have 500"):
        oc.diversify(good, np.zeros(499, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="block_rows must be >= 1, got 0"):
        oc.select_top(good, 3, block_rows=0)
    with pytest.raises(TypeError, match="block_rows must be a positive integer, got 2.5"):
        oc.entropy(P, block_rows=2.5)
    with pytest.raises(ValueError, match="probs needs at least 2 classes"):
        oc.top2_margin(rng.random((10, 1)))
    # a file cut short after the memmap was opened
    path = tmp_path / "cut.npy"
    np.save(path, rng.random((100, 4)))
    cut = np.load(path, mmap_mode="r")
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 4 * 8 * 30)
    with pytest.raises(ValueError, match="ends before row 70 of the memmap"):
        oc.least_confidence(cut, block_rows=50)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the peak RSS from /proc (Linux)")
def test_a_memmap_pool_is_scored_in_bounded_memory(tmp_path):
    """A 61 MiB memmap pool scored and selected in 3.7 MiB blocks raises the peak RSS by far
    less than the pool: its pages are read, never mapped (a view of the same map, sliced, does
    count its pages)."""
    path = tmp_path / "probs.npy"
    n, C = 200_000, 160
    mm = np.lib.format.open_memmap(path, "w+", np.float16, (n, C))
    rng = np.random.default_rng(7)
    for start in range(0, n, 20_000):
        mm[start : start + 20_000] = rng.random((20_000, C), dtype=np.float32)
    mm.flush()
    del mm
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import alamp_fast as af
        from alamp_fast import outofcore as oc

        def status_mib(field):
            with open("/proc/self/status") as f:
                line = next(x for x in f if x.startswith(field + ":"))
            return int(line.split()[1]) / 1024

        P = np.load({str(path)!r}, mmap_mode="r")
        pool = P if sys.argv[1] == "file" else P[0:]
        # compile / load every kernel on a small input first (a compilation peaks high)
        m, top = oc.top2_margin(np.asarray(P[:1000]))
        oc.select_top(m, 10), oc.diversify(m, top, 10)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = status_mib("VmRSS")
        m, top = oc.top2_margin(pool, block_rows=12_000)  # 12_000 x 160 x 2 B = 3.7 MiB
        sel = oc.select_top(m, 500, largest=False, block_rows=50_000)
        div = oc.diversify(m, top, 500, largest=False, block_rows=50_000)
        print(status_mib("VmHWM") - before)
        """
    )
    growth = {}
    for kind in ("file", "view"):
        out = subprocess.run([sys.executable, "-c", script, kind], capture_output=True, text=True)
        if out.returncode and "clear_refs" in out.stderr:
            pytest.skip(f"cannot reset the peak RSS here: {out.stderr.strip().splitlines()[-1]}")
        assert out.returncode == 0, out.stderr
        growth[kind] = float(out.stdout.split()[-1])
    # file: outputs 2.3 MiB + blocks (3.7 MiB read, 4 MiB widened, ~5 MiB for the selections);
    # the view maps all 61 MiB of the pool
    assert growth["file"] < 24, f"peak RSS grew by {growth} MiB reading the file"
    assert growth["view"] > 50, f"the sliced view grew only {growth} MiB: no control"
