"""Annotation rounds (``alamp_fast.workflow``): a simulated annotator, compared with simulate().

Several rounds end to end through the Python API and the CLI give the picks of
``simulate(seed=s, runs=1)``; labels, partial batches, relabels, unrequested ids, a pool that
grows (margin fallback for new rows, checked against a literal computation), status numbers.
The crash and bad-input tests are in ``test_workflow_faults.py``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_exact

from alamp_fast.al.datasets import l2_normalize, load_features
from alamp_fast.al.protocol import derive_seed, make_classifier, simulate
from alamp_fast.al.strategies import STRATEGIES
from alamp_fast.cli import main
from alamp_fast.workflow import STATE_FILE, PoolChangedError, Project

N_CLASSES = 5
NAMES = [f"c{i}" for i in range(N_CLASSES)]


# ----------------------------------------------------------------------------- helpers


def make_pool(rng, n=200, d=10, c=N_CLASSES):
    """Gaussian blobs: (X float32, y codes, centres)."""
    centres = rng.normal(0.0, 2.0, (c, d))
    y = rng.integers(0, c, n)
    X = (centres[y] + rng.normal(0.0, 1.5, (n, d))).astype(np.float32)
    return X, y, centres


def write_pool(path: Path, X) -> Path:
    np.save(path, np.asarray(X, dtype=np.float32))
    return path


def truth_by_id(y, names=NAMES) -> dict[str, str]:
    """The annotator's answers for row-number ids."""
    return {str(i): names[c] for i, c in enumerate(y.tolist())}


def fill_labels(batch_csv: Path, truth: dict[str, str], out: Path) -> Path:
    """The annotators' work: the batch CSV with its label column filled in."""
    with open(batch_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    col = rows[0].index("label")
    for row in rows[1:]:
        row[col] = truth[row[1]]
    with open(out, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return out


def drive(project_dir, truth: dict[str, str], n_rounds: int, work_dir) -> None:
    """Rounds as a user runs them, resumable from any state: select (which hands back a batch
    still waiting for labels), label its CSV, until ``n_rounds`` rounds are labeled."""
    while True:
        proj = Project.open(project_dir)
        pending = proj.status(cv=0)["pending"]
        if proj.rounds >= n_rounds and not pending:
            return
        batch = proj.select()
        labels = fill_labels(batch.path, truth, Path(work_dir) / f"labels-{batch.round}.csv")
        proj.label(labels)


def project_order(proj: Project) -> np.ndarray:
    return np.concatenate([proj.batch(r).rows for r in range(1, proj.rounds + 1)])


def state_bytes(project_dir) -> bytes:
    return (Path(project_dir) / STATE_FILE).read_bytes()


# ----------------------------------------------------------------------------- same picks


# linear-svc (the default) for every strategy; logreg and the cost-sensitive variant once each
CASES = [(s, "linear-svc", False) for s in STRATEGIES] + [
    ("alamp", "logreg", False),
    ("alamp-div", "linear-svc", True),
]


@pytest.mark.parametrize(("strategy", "classifier", "cost_sensitive"), CASES,
                         ids=[f"{s}-{c}{'-cs' if cs else ''}" for s, c, cs in CASES])
def test_rounds_match_simulate(tmp_path, rng, strategy, classifier, cost_sensitive):
    X, y, _ = make_pool(rng, n=180)
    seed = int(rng.integers(0, 1000))
    init, step, iterations = 20, 12, 4
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "proj", pool, classes=NAMES, strategy=strategy, budget=step,
                        init=init, classifier=classifier, cost_sensitive=cost_sensitive,
                        seed=seed)
    truth = truth_by_id(y)
    for _ in range(iterations + 1):
        batch = proj.select()
        rep = proj.label({i: truth[i] for i in batch.ids})
        assert (rep.new, rep.pending) == (len(batch), 0)
    expected = simulate(l2_normalize(X), y, l2_normalize(X[:30]), y[:30], strategies=[strategy],
                        classifier=classifier, init=init, step=step, iterations=iterations,
                        runs=1, seed=seed, cost_sensitive=cost_sensitive)
    assert_exact(project_order(proj), expected.records[strategy][0].order, f"{strategy} picks")
    # a reopened project sees the same thing
    again = Project.open(tmp_path / "proj")
    assert again.rounds == iterations + 1
    assert_exact(again.labels_array(), np.where(np.isin(np.arange(180), project_order(proj)),
                                                y, -1), "labels")


def test_resumable_drive_through_csv_files_matches_in_memory_run(tmp_path, rng):
    # The CSV round trip (ids and labels as text) loses nothing: same picks as the dict path.
    X, y, _ = make_pool(rng, n=150)
    pool = write_pool(tmp_path / "pool.npy", X)
    truth = truth_by_id(y)
    kw = dict(classes=NAMES, strategy="alamp-div", budget=10, init=15, classifier="linear-svc",
              cost_sensitive=False, seed=7)
    a = Project.init(tmp_path / "a", pool, **kw)
    for _ in range(4):
        b = a.select()
        a.label({i: truth[i] for i in b.ids})
    Project.init(tmp_path / "b", pool, **kw)
    drive(tmp_path / "b", truth, 4, tmp_path)
    assert_exact(project_order(Project.open(tmp_path / "b")), project_order(a), "picks")


# ----------------------------------------------------------------------------- batch contents


def test_batch_csv_columns_and_scores(tmp_path, rng):
    X, y, _ = make_pool(rng, n=120)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="margin", budget=8,
                        init=15, classifier="logreg", cost_sensitive=False, seed=1)
    truth = truth_by_id(y)
    first = proj.select()
    assert first.kind == "initial" and first.path.name == "round-001.csv"
    assert np.isnan(first.scores).all() and first.predicted == [None] * 15
    proj.label({i: truth[i] for i in first.ids})
    second = proj.select()
    with open(second.path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["rank", "id", "score", "margin", "predicted", "label"]
    assert [r["id"] for r in rows] == second.ids
    assert [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert all(r["label"] == "" for r in rows)
    # margin sampling: the score is the margin, lowest first, and the predicted class is the
    # argmax of the model trained on the first batch (literal recomputation)
    labeled = first.rows
    # the rows are normalised once, while read (as simulate() treats unit rows)
    clf = make_classifier("logreg", cost_sensitive=False, random_state=derive_seed(1, 0),
                          prenormalized=True)
    Xn = l2_normalize(X)
    clf.fit(Xn[labeled], y[labeled])
    probs = np.zeros((X.shape[0], N_CLASSES))
    probs[:, clf.classes_] = clf.predict_proba(Xn)
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    np.testing.assert_allclose(second.scores, margin[second.rows], rtol=1e-12)
    np.testing.assert_allclose(second.margins, margin[second.rows], rtol=1e-12)
    assert np.all(np.diff(second.scores) >= 0)
    assert second.predicted == [NAMES[c] for c in probs[second.rows].argmax(axis=1)]
    np.testing.assert_allclose([float(r["score"]) for r in rows], second.scores, rtol=1e-5)


# ----------------------------------------------------------------------------- labels


def test_partial_batches_relabels_and_unrequested_ids(tmp_path, rng):
    X, y, _ = make_pool(rng, n=100)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="alamp", budget=10,
                        init=12, classifier="linear-svc", cost_sensitive=False, seed=2)
    truth = truth_by_id(y)
    b1 = proj.select()
    half = b1.ids[:6]
    rep = proj.label({i: truth[i] for i in half} | {b1.ids[6]: ""})
    assert (rep.new, rep.blank, rep.pending) == (6, 1, 6)

    # a partly labeled batch blocks the next round unless asked explicitly
    before = state_bytes(proj.path)
    with pytest.raises(ValueError, match=r"round 1: 6 of 12 samples have no label yet.*"
                                         r"--allow-partial"):
        proj.select()
    assert state_bytes(proj.path) == before
    proj.label({i: truth[i] for i in b1.ids[6:]})

    # relabel: refused without the flag (nothing ingested), accepted with it; the latest wins
    wrong = NAMES[(NAMES.index(truth[b1.ids[0]]) + 1) % N_CLASSES]
    before = state_bytes(proj.path)
    with pytest.raises(ValueError, match=r"already labeled with another class \(1\).*--relabel"):
        proj.label({b1.ids[0]: wrong, b1.ids[1]: truth[b1.ids[1]]})
    assert state_bytes(proj.path) == before
    rep = proj.label({b1.ids[0]: wrong, b1.ids[1]: truth[b1.ids[1]]}, relabel=True)
    assert (rep.new, rep.relabeled, rep.unchanged) == (0, 1, 1)
    assert proj.labels_array()[b1.rows[0]] == NAMES.index(wrong)
    events = proj.labels()
    assert len(events) == 13 and events[-1]["relabel"] and events[-1]["label"] == wrong
    assert all(e["round"] == 1 for e in events)

    # the same records again: nothing new, no write at all
    before = state_bytes(proj.path)
    rep = proj.label({b1.ids[0]: wrong})
    assert (rep.new, rep.relabeled, rep.unchanged) == (0, 0, 1)
    assert state_bytes(proj.path) == before

    # ids no batch asked for
    others = [str(i) for i in range(100) if i not in set(b1.rows.tolist())][:2]
    with pytest.raises(ValueError, match=r"ids no batch asked for \(2\).*--allow-unrequested"):
        proj.label({i: truth[i] for i in others})
    rep = proj.label({i: truth[i] for i in others}, allow_unrequested=True)
    assert (rep.new, rep.unrequested) == (2, 2)

    # allow_partial: round 2 starts without the pending rows, which stay in the pool
    b2 = proj.select()
    proj.label({b2.ids[0]: truth[b2.ids[0]]})
    b3 = proj.select(allow_partial=True)
    assert b3.round == 3 and proj.status(cv=0)["history"][-1]["discarded_pending"] == 9
    labeled = proj.labels_array() >= 0
    assert not labeled[b3.rows].any()
    assert labeled.sum() == 12 + 2 + 1


def test_unlabeled_batch_is_handed_back_and_its_csv_rewritten(tmp_path, rng):
    X, y, _ = make_pool(rng, n=80)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, budget=10, classifier="linear-svc",
                        seed=4)
    b1 = proj.select(out=tmp_path / "copy.csv")
    assert (tmp_path / "copy.csv").read_bytes() == b1.path.read_bytes()
    content = b1.path.read_bytes()
    b1.path.unlink()
    again = proj.select()
    assert again.reissued and again.round == 1 and proj.rounds == 1
    assert_exact(again.rows, b1.rows, "reissued rows")
    assert b1.path.read_bytes() == content
    # an explicit budget means a new round was wanted: refused while the batch waits
    with pytest.raises(ValueError, match="10 of 10 samples have no label yet"):
        proj.select(budget=5)
    truth = truth_by_id(y)
    proj.label({i: truth[i] for i in b1.ids})
    assert len(proj.select(budget=5)) == 5
    proj.label({i: truth[i] for i in proj.batch(2).ids})
    with pytest.raises(ValueError, match=r"budget b=100 exceeds the 65 unlabeled samples"):
        proj.select(budget=100)


def test_label_csv_formats(tmp_path, rng):
    # BOM, extra and reordered columns, header case, spaces, blank lines: all read the same
    X, y, _ = make_pool(rng, n=60)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, budget=6, classifier="linear-svc",
                        seed=0)
    b = proj.select()
    truth = truth_by_id(y)
    lines = ["Notes, Label ,ID,extra"] + [f"x{k}, {truth[i]} , {i} ,z" for k, i in
                                          enumerate(b.ids[:3])] + ["", ",,,", f"x9,,{b.ids[3]},z"]
    f = tmp_path / "odd.csv"
    f.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    rep = proj.label(f)
    assert (rep.new, rep.blank) == (3, 1)
    g = tmp_path / "named.csv"
    g.write_text("sample;x\n" + "".join(f"{i};{truth[i]}\n" for i in b.ids[3:]))
    # a spreadsheet's "CSV" with semicolons (decimal-comma locales) is read as such
    with pytest.raises(ValueError, match=r"named.csv has no 'id' column \(its header is "
                                         r"'sample,x'\)"):
        proj.label(g)
    g.write_text("sample,cls\n" + "".join(f"{i},{truth[i]}\n" for i in b.ids[3:]))
    rep = proj.label(g, id_column="sample", label_column="CLS")
    assert (rep.new, rep.pending) == (3, 0)
    assert_exact(np.sort(np.flatnonzero(proj.labels_array() >= 0)), np.sort(b.rows), "labeled")


def test_label_records_types(tmp_path, rng):
    X, _, _ = make_pool(rng, n=40)
    proj = Project.init(tmp_path / "p", write_pool(tmp_path / "pool.npy", X), classes=NAMES,
                        budget=4, classifier="linear-svc")
    b = proj.select()
    with pytest.raises(TypeError, match="class name"):
        proj.label({b.ids[0]: 3})
    with pytest.raises(TypeError, match=r"\(id, label\) pairs"):
        proj.label([b.ids[0]])
    with pytest.raises(ValueError, match="no label records"):
        proj.label({})
    rep = proj.label([(int(b.ids[0]), "c1")])   # ints are ids too
    assert rep.new == 1


# ----------------------------------------------------------------------------- growing pools


def test_appended_rows_get_the_margin_fallback(tmp_path, rng):
    X, y, centres = make_pool(rng, n=150)
    pool = write_pool(tmp_path / "pool.npy", X)
    seed = 11
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="alamp", budget=10,
                        init=25, classifier="logreg", cost_sensitive=False, seed=seed)
    truth = truth_by_id(y)
    for _ in range(2):
        b = proj.select()
        proj.label({i: truth[i] for i in b.ids})
    with np.load(tmp_path / "p" / STATE_FILE) as st:
        prev_margin = st["strategy.prev_margin"]
    assert prev_margin.shape == (150,)

    # new samples between two class centres: uncertain, so alamp's fallback should want them
    m = 20
    pair = rng.integers(0, N_CLASSES, (m, 2))
    X_new = ((centres[pair[:, 0]] + centres[pair[:, 1]]) / 2
             + rng.normal(0, 0.3, (m, X.shape[1]))).astype(np.float32)
    X_big = np.concatenate([X, X_new])
    write_pool(pool, X_big)
    b3 = proj.select()
    assert proj.status(cv=0)["history"][-1]["new_rows"] == m
    assert proj.status(cv=0)["n_pool"] == 150 + m

    # literal reference: retrain, margins by sorting, prev = 1.0 for new rows, rank by score
    labeled = np.concatenate([proj.batch(1).rows, proj.batch(2).rows])
    Xn = l2_normalize(X_big)
    clf = make_classifier("logreg", cost_sensitive=False, random_state=derive_seed(seed, 0),
                          prenormalized=True)
    clf.fit(Xn[labeled], y[labeled])
    probs = np.zeros((150 + m, N_CLASSES))
    probs[:, clf.classes_] = clf.predict_proba(Xn)
    cur = [sorted(row)[-1] - sorted(row)[-2] for row in probs.tolist()]
    prev = prev_margin.tolist() + [1.0] * m
    score = [0.0 if p + c == 0 else (p - c) / (p + c) for p, c in zip(prev, cur, strict=True)]
    taken = set(labeled.tolist())
    order = sorted((r for r in range(150 + m) if r not in taken), key=lambda r: (-score[r], r))
    assert_exact(b3.rows, order[:10], "picks on the grown pool")
    np.testing.assert_allclose(b3.scores, np.array(score)[b3.rows], rtol=1e-9)
    new_picked = b3.rows[b3.rows >= 150]
    assert new_picked.size >= 1, "the test should make alamp pick appended rows"
    cur_new = np.array(cur)[new_picked]
    np.testing.assert_allclose(np.array(score)[new_picked], (1 - cur_new) / (1 + cur_new))
    with np.load(tmp_path / "p" / STATE_FILE) as st:
        assert st["strategy.prev_margin"].shape == (150 + m,)
        assert st["ids"].tolist() == [str(i) for i in range(150 + m)]

    # new rows are labeled like any other (their true class is "between two centres": c0)
    rep = proj.label({str(r): truth.get(str(r), NAMES[0]) for r in b3.rows.tolist()})
    assert (rep.new, rep.pending) == (10, 0)


# ----------------------------------------------------------------------------- ids and formats


def test_quantized_npz_pool_with_ids_from_key_and_files(tmp_path, rng):
    n, d = 90, 8
    Xq = rng.integers(0, 256, (n, d)).astype(np.uint8)
    y = rng.integers(0, 3, n).astype(np.int16)
    names = np.array(["bird", "cat", "dog"])
    paths = np.array([f"{names[c]}/img_{i:03d}.jpg" for i, c in enumerate(y)])
    pool = tmp_path / "feats.npz"
    np.savez(pool, Xq=Xq, scale=np.float32(0.05), zero_point=np.int32(128), y=y,
             classes=names, paths=paths)
    X_ref, _, _ = load_features(pool)      # the package's reader: same features
    truth = {p: str(names[c]) for p, c in zip(paths, y, strict=True)}

    proj = Project.init(tmp_path / "a", pool, id_column="paths", strategy="margin", budget=6,
                        classifier="logreg", cost_sensitive=False, seed=5)
    assert proj.classes == names.tolist()
    for _ in range(3):
        b = proj.select()
        assert all(i in truth for i in b.ids)
        proj.label({i: truth[i] for i in b.ids})
    expected = simulate(l2_normalize(X_ref), y.astype(np.int64), l2_normalize(X_ref[:9]),
                        y[:9].astype(np.int64), strategies=["margin"], classifier="logreg",
                        init=6, step=6, iterations=2, runs=1, seed=5, cost_sensitive=False)
    assert_exact(project_order(proj), expected.records["margin"][0].order, "npz picks")

    # the same ids from a text file and from a CSV column
    (tmp_path / "ids.txt").write_text("\n".join(paths) + "\n\n")
    with open(tmp_path / "ids.csv", "w", newline="") as f:
        csv.writer(f).writerows([["n", "name"], *[[k, p] for k, p in enumerate(paths)]])
    for ids, col in ((tmp_path / "ids.txt", None), (tmp_path / "ids.csv", "name")):
        other = Project.init(tmp_path / f"p-{ids.suffix[1:]}", pool, ids=ids, id_column=col,
                             strategy="margin", budget=6, classifier="logreg",
                             cost_sensitive=False, seed=5)
        b = other.select()
        assert b.ids == proj.batch(1).ids


def test_real_features_two_rounds(tmp_path, data_dir):
    # the shared quantized format, 400 rows of Caltech-101, ids from its 'paths' array
    with np.load(data_dir / "caltech101" / "feats_mobilenetv1_train.npz") as d:
        keep = np.arange(0, 4000, 10)
        sub = {k: d[k][keep] if d[k].ndim and d[k].shape[0] == d["y"].shape[0] else d[k]
               for k in d.files}
    pool = tmp_path / "caltech_sub.npz"
    np.savez(pool, **sub)
    proj = Project.init(tmp_path / "p", pool, id_column="paths", strategy="alamp-div",
                        budget=20, init=40, classifier="linear-svc", cost_sensitive=False)
    truth = {p: str(sub["classes"][c]) for p, c in zip(sub["paths"], sub["y"], strict=True)}
    for _ in range(3):
        b = proj.select()
        proj.label({i: truth[i] for i in b.ids})
    s = proj.status(cv=3)
    assert s["n_labeled"] == 80 and s["rounds"] == 3
    assert 0.0 <= s["cv"]["accuracy"] <= 1.0 and s["cv"]["folds"] == 3


# ----------------------------------------------------------------------------- the CLI


def test_cli_rounds_and_status(tmp_path, rng, capsys):
    X, y, _ = make_pool(rng, n=120)
    pool = write_pool(tmp_path / "pool.npy", X)
    (tmp_path / "classes.txt").write_text("\n".join(NAMES) + "\n")
    p = str(tmp_path / "proj")
    assert main(["init", "-p", p, "--pool", str(pool), "--classes", str(tmp_path / "classes.txt"),
                 "--strategy", "alamp", "--budget", "10", "--init", "20",
                 "--cost-sensitive", "off", "--seed", "9"]) == 0
    assert "created project" in capsys.readouterr().out
    truth = truth_by_id(y)
    for r in range(1, 4):
        assert main(["select", "-p", p]) == 0
        out = capsys.readouterr().out
        assert f"round {r}: " in out
        batch_csv = Path(p) / "batches" / f"round-{r:03d}.csv"
        labels = fill_labels(batch_csv, truth, tmp_path / f"l{r}.csv")
        assert main(["label", "-p", p, str(labels)]) == 0
        assert f"{10 if r > 1 else 20} new" in capsys.readouterr().out
    expected = simulate(l2_normalize(X), y, l2_normalize(X[:30]), y[:30], strategies=["alamp"],
                        classifier="linear-svc", init=20, step=10, iterations=2, runs=1, seed=9,
                        cost_sensitive=False)
    proj = Project.open(p)
    assert_exact(project_order(proj), expected.records["alamp"][0].order, "CLI picks")

    assert main(["status", "-p", p, "--json", "--cv", "4"]) == 0
    st = json.loads(capsys.readouterr().out)
    rows = project_order(proj)
    counts = np.bincount(y[rows], minlength=N_CLASSES)
    assert st["class_counts"] == dict(zip(NAMES, counts.tolist(), strict=True))
    assert st["ir"] == pytest.approx(float(np.std(counts) / np.mean(counts)), rel=1e-12)
    assert (st["rounds"], st["n_labeled"], st["pending"]) == (3, 40, [])
    assert [h["kind"] for h in st["history"]] == ["initial", "strategy", "strategy"]
    # the estimate is 4-fold stratified CV of the project's classifier over the labeled rows
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(4, shuffle=True, random_state=derive_seed(9, 0))
    clf = make_classifier("linear-svc", cost_sensitive=False, random_state=derive_seed(9, 0))
    acc = cross_val_score(clf, l2_normalize(X)[rows], y[rows], cv=cv)
    assert st["cv"]["accuracy"] == pytest.approx(acc.mean(), rel=1e-12)
    assert st["cv"]["folds"] == 4 and st["cv"]["n_labels"] == 40

    assert main(["status", "-p", p]) == 0
    text = capsys.readouterr().out
    assert "cv       accuracy" in text and "rounds   3" in text


def test_cli_user_errors_are_one_line(tmp_path, rng, capsys):
    X, _, _ = make_pool(rng, n=30)
    pool = write_pool(tmp_path / "pool.npy", X)
    p = str(tmp_path / "proj")
    bad = [
        (["init", "-p", p, "--pool", str(pool)], "no class names"),
        (["init", "-p", p, "--pool", str(pool), "--classes", "a"], "at least 2 classes"),
        (["init", "-p", p, "--pool", str(pool), "--classes", "a,b", "--strategy", "best"],
         "unknown strategy 'best'"),
        (["init", "-p", p, "--pool", str(pool), "--classes", "a,b", "--classifier", "knn"],
         "unknown classifier 'knn'"),
        (["init", "-p", p, "--pool", str(pool), "--classes", "a,b", "--budget", "0"],
         "--budget must be >= 1"),
        (["init", "-p", p, "--pool", str(tmp_path / "nope.npy"), "--classes", "a,b"],
         "does not exist"),
        (["init", "-p", p, "--pool", str(pool), "--classes", "a,a"], "listed twice"),
        (["select", "-p", str(tmp_path / "none")], "no alamp-fast project"),
    ]
    for argv, msg in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "proj" / STATE_FILE).exists()

    (tmp_path / "ids.txt").write_text("a\nb\na\n" + "x\n" * 27)
    assert main(["init", "-p", p, "--pool", str(pool), "--classes", "a,b", "--ids",
                 str(tmp_path / "ids.txt")]) == 2
    assert "sample id 'a' appears 2 times" in capsys.readouterr().err
    (tmp_path / "ids.txt").write_text("\n".join(f"s{i}" for i in range(29)))
    assert main(["init", "-p", p, "--pool", str(pool), "--classes", "a,b", "--ids",
                 str(tmp_path / "ids.txt")]) == 2
    assert "holds 29 sample ids but the pool has 30 rows" in capsys.readouterr().err


# ----------------------------------------------------------------------------- export


def test_export_labels_as_csv_npz_parquet(tmp_path, rng, capsys):
    X, y, _ = make_pool(rng, n=80)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="margin", budget=6,
                        init=12, classifier="logreg", seed=2)
    truth = truth_by_id(y)
    b1 = proj.select()
    proj.label({i: truth[i] for i in b1.ids})
    b2 = proj.select()
    proj.label({i: truth[i] for i in b2.ids[:4]})
    extra = next(str(i) for i in range(80) if str(i) not in b1.ids + b2.ids)
    proj.label({extra: truth[extra]}, allow_unrequested=True)  # asked by no batch: round 0
    labeled = {e["id"]: e["label"] for e in proj.labels()}
    expect_round = {i: 1 for i in b1.ids} | {i: 2 for i in b2.ids}
    score_of = dict(zip(b2.ids, b2.scores.tolist(), strict=True))

    def check(ids, labels, rounds, scores):
        assert sorted(ids, key=int) == list(ids), "rows in pool order"
        assert dict(zip(ids, labels, strict=True)) == labeled
        for i, r, sc in zip(ids, rounds, scores, strict=True):
            assert r == expect_round.get(i, 0)
            if r == 2:
                assert abs(float(sc) - score_of[i]) <= 1e-6 * max(1.0, abs(score_of[i]))
            else:
                assert np.isnan(float(sc)) if sc != "" else True

    out = tmp_path / "labels.csv"
    assert main(["export", "-p", str(tmp_path / "p"), "--out", str(out)]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "label", "round", "score"]
    check([r["id"] for r in rows], [r["label"] for r in rows], [int(r["round"]) for r in rows],
          [r["score"] for r in rows])
    npz = tmp_path / "labels.npz"
    assert proj.export_labels(npz) == len(labeled)
    with np.load(npz, allow_pickle=False) as t:
        check(t["id"].tolist(), t["label"].tolist(), t["round"].tolist(), t["score"].tolist())
    import pyarrow.parquet as pq  # the test extra installs it
    pqf = tmp_path / "labels.parquet"
    assert main(["export", "-p", str(tmp_path / "p"), "--format", "parquet", "--out",
                 str(pqf)]) == 0
    t = pq.read_table(pqf).to_pydict()
    check(t["id"], t["label"], t["round"], [np.nan if v is None else v for v in t["score"]])
    capsys.readouterr()
    assert main(["export", "-p", str(tmp_path / "p"), "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "choose csv, parquet or npz" in capsys.readouterr().err


def test_label_studio_tasks_out_and_annotations_back(tmp_path, rng):
    X, y, _ = make_pool(rng, n=80)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy="alamp", budget=6,
                        init=12, classifier="logreg", seed=3)
    truth = truth_by_id(y)
    proj.label({i: truth[i] for i in proj.select().ids})
    b2 = proj.select()
    tasks_path = tmp_path / "tasks.json"
    assert main(["export", "-p", str(tmp_path / "p"), "--round", "2", "--format",
                 "label-studio", "--out", str(tasks_path)]) == 0
    tasks = json.loads(tasks_path.read_text())
    assert [t["data"]["sample_id"] for t in tasks] == b2.ids
    assert [t["data"]["rank"] for t in tasks] == list(range(1, 7))
    for t, score in zip(tasks, b2.scores.tolist(), strict=True):
        (pred,) = t["predictions"]
        assert pred["model_version"] == "alamp" and pred["score"] == score
    # Label Studio's JSON export after annotation: a cancelled and a later annotation
    exported = []
    for k, t in enumerate(tasks):
        sid = t["data"]["sample_id"]
        anns = [{"was_cancelled": True, "result": [
            {"from_name": "label", "to_name": "image", "type": "choices",
             "value": {"choices": [NAMES[0]]}}]}]
        if k < 5:  # the last task is not annotated yet
            anns.append({"was_cancelled": False, "result": [
                {"from_name": "label", "to_name": "image", "type": "choices",
                 "value": {"choices": [truth[sid]]}}]})
        exported.append({"id": 100 + k, "data": t["data"], "annotations": anns,
                         "predictions": t["predictions"]})
    back = tmp_path / "ls-export.json"
    back.write_text(json.dumps(exported))
    rep = Project.open(tmp_path / "p").label(back)
    assert (rep.new, rep.blank, rep.pending) == (5, 1, 1)
    # JSON_MIN: flat rows, the control's name as the label key
    mini = tmp_path / "ls-min.json"
    mini.write_text(json.dumps([{"id": 7, "sample_id": b2.ids[5], "label": truth[b2.ids[5]]}]))
    rep = Project.open(tmp_path / "p").label(mini)
    assert (rep.new, rep.pending) == (1, 0)
    got = {e["id"]: e["label"] for e in Project.open(tmp_path / "p").labels()}
    assert all(got[i] == truth[i] for i in b2.ids)


# ----------------------------------------------------------------------------- round costs


def test_random_rounds_read_no_features_and_the_hash_is_not_recomputed(
    tmp_path, rng, monkeypatch
):
    import os
    import time

    import alamp_fast.workflow.pool as wf_pool

    X, y, _ = make_pool(rng, n=90)
    pool = write_pool(tmp_path / "pool.npy", X)
    old = time.time() - 3600
    os.utime(pool, (old, old))  # a pool written long ago (a fresh write is always re-hashed)
    time.sleep(0)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, budget=10, classifier="logreg",
                        seed=4)
    truth = truth_by_id(y)
    reads = []
    real = wf_pool._load_pool

    def counting(path, **kw):
        reads.append(kw.get("known_sha") is not None)
        return real(path, **kw)

    monkeypatch.setattr(wf_pool, "_load_pool", counting)
    b1 = proj.select()  # random: the pool's features are not read
    assert reads == [], reads
    proj.label({i: truth[i] for i in b1.ids})
    proj.select()  # a strategy round reads them once, without hashing them again
    assert reads == [True], reads
    # an edit the signature sees (size and content unchanged, mtime moved) is re-hashed
    monkeypatch.undo()
    proj.label({i: truth[i] for i in proj.batch(2).ids})
    X2 = X.copy()
    X2[5, 0] += 1
    write_pool(pool, X2)
    os.utime(pool, (old + 1, old + 1))
    with pytest.raises(PoolChangedError, match="features of its first 90 rows differ"):
        proj.select()


@pytest.mark.parametrize("strategy", ["alamp", "margin", "entropy"])
def test_a_round_scores_the_pool_once(tmp_path, rng, monkeypatch, strategy):
    from alamp_fast.al.classifiers import SoftmaxLinearSVC

    n = 600
    X, y, _ = make_pool(rng, n=n)
    pool = write_pool(tmp_path / "pool.npy", X)
    proj = Project.init(tmp_path / "p", pool, classes=NAMES, strategy=strategy, budget=10,
                        init=30, seed=6)
    truth = truth_by_id(y)
    proj.label({i: truth[i] for i in proj.select().ids})
    calls = []
    real = SoftmaxLinearSVC.decision_function

    def counted(self, X):
        calls.append(X.shape[0])
        return real(self, X)

    monkeypatch.setattr(SoftmaxLinearSVC, "decision_function", counted)
    batch = proj.select()
    assert batch.kind == "strategy"
    assert calls.count(n) == 1, f"the pool was scored {calls.count(n)} times: {calls}"
