"""Version matrix of the host libraries of ``alamp_fast.integrations``.

For every host (modAL, scikit-activeml, baal, small-text) and every version in ``MATRIX`` (the
oldest release the extra of ``pyproject.toml`` admits, the current one, the release just below
the range where one fails; for modAL also the last scikit-learn before 1.8), this script makes a
fresh virtual environment under ``--work`` (default ``alamp-adapters`` in the temporary folder),
installs that host version (and whatever it needs that the base environment lacks) into it, and
runs the adapter's tests (``tests/integrations/test_integrations_<host>.py``) and the examples
of ``docs/integrations.md`` for that host (``tests/integrations/test_integrations_docs.py``)
against a snapshot of the repository's ``HEAD``. Pass/fail, test counts and the versions that
were really imported go to ``benchmarks/results/adapters_matrix.json``, and its markdown table
into ``docs/integrations.md`` (``--table`` prints it, ``--docs`` writes it). A version inside
the range that fails makes the exit status 1.

Each environment is layered over the base environment (``--base``, default the running
interpreter's, i.e. the project's ``.venv``): its own site-packages come first, then the base's,
so pip installs only the host and the packages whose versions differ. torch is pinned to the
base's version (a constraints file), so pip never pulls a CUDA build.

    .venv/bin/python .ci/adapters.py              # whole matrix, sequentially (~10 min)
    .venv/bin/python .ci/adapters.py --only modal # one host (the file keeps the other rows)
    .venv/bin/python .ci/adapters.py --table      # the docs table from the results file
    .venv/bin/python .ci/adapters.py --docs       # ... written into docs/integrations.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "adapters_matrix.json"
DOC = REPO / "docs" / "integrations.md"
MARKERS = re.compile(r"(<!-- adapters-matrix:start -->\n).*?(<!-- adapters-matrix:end -->)", re.S)


@dataclass(frozen=True)
class Entry:
    host: str  # module name under alamp_fast.integrations
    label: str  # "oldest", "current", ...
    requirements: tuple[str, ...]  # pip requirement strings installed over the base
    # inside the range pyproject.toml's extra states (tests/integrations/test_integrations_docs.py
    # checks that the extra admits these versions, and only these of the matrix)
    in_range: bool = True


# distribution name of each host on PyPI
DIST = {
    "modal": "modAL-python",
    "skactiveml": "scikit-activeml",
    "baal": "baal",
    "small_text": "small-text",
}

MATRIX = [
    # 0.4.1: no query(return_metrics=...), and its learners call check_X_y(force_all_finite=)
    Entry("modal", "below the range", ("modAL-python==0.4.1",), in_range=False),
    Entry("modal", "oldest = current", ("modAL-python==0.4.2.1",)),
    # modAL's teach/fit pass force_all_finite, which scikit-learn 1.8 removed: the last
    # scikit-learn before 1.8, where modAL's own loop (teach) works unpatched
    Entry("modal", "oldest = current, scikit-learn 1.7",
          ("modAL-python==0.4.2.1", "scikit-learn==1.7.2")),
    Entry("skactiveml", "oldest", ("scikit-activeml==0.6.2",)),
    Entry("skactiveml", "current", ("scikit-activeml==1.0.1",)),
    # 2.0.0 pins numpy < 2 and a torchmetrics that imports pkg_resources
    Entry("baal", "below the range", ("baal==2.0.0",), in_range=False),
    Entry("baal", "oldest = current", ("baal==2.1.0",)),
    Entry("small_text", "oldest", ("small-text==1.3.3",)),
    Entry("small_text", "current", ("small-text==1.4.1",)),
]

# reported for every entry, beside the host itself
COMMON_DISTS = ("scikit-learn", "numpy", "scipy", "torch")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def newest_release(dist: str, python: str) -> str | None:
    """The newest version of ``dist`` the package index offers (``pip index versions``)."""
    out = run([python, "-m", "pip", "index", "versions", dist])
    m = re.search(r"Available versions:\s*([^,\s]+)", out.stdout)
    return m.group(1) if m else None


def snapshot(dest: Path) -> str:
    """Extract ``git archive HEAD`` into ``dest``; return the commit."""
    commit = run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True).stdout.strip()
    if dest.exists():
        marker = dest / ".commit"
        if marker.exists() and marker.read_text() == commit:
            return commit  # same commit: keep it (and its numba cache)
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    archive = dest.parent / "head.tar"
    with open(archive, "wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    (dest / ".commit").write_text(commit)
    return commit


def make_env(path: Path, base_python: str) -> str:
    """A fresh venv at ``path`` that sees the base environment's packages after its own."""
    if path.exists():
        shutil.rmtree(path)
    base_exe = run(
        [base_python, "-c", "import sys; print(sys._base_executable)"], check=True
    ).stdout.strip()
    subprocess.run([base_exe, "-m", "venv", "--without-pip", str(path)], check=True)
    python = str(path / "bin" / "python")
    site = run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True
    ).stdout.strip()
    base_site = run(
        [base_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
    ).stdout.strip()
    # paths a .pth adds come after the venv's own site-packages; the base's own .pth files
    # (its editable alamp_fast) are not run, so alamp_fast comes from PYTHONPATH
    Path(site, "_alamp_adapters_base.pth").write_text(base_site + "\n")
    return python


def versions(python: str, dists) -> dict:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = None\n"
        "print(json.dumps(out))"
    )
    return json.loads(run([python, "-c", code, *dists], check=True).stdout)


def junit_counts(path: Path) -> dict:
    if not path.exists():
        return {}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (
        int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")
    )
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return {
        "passed": tests - failures - errors - skipped,
        "failed": failures + errors,
        "skipped": skipped,
        "failed_tests": failed,
    }


def run_entry(entry: Entry, *, work: Path, src: Path, base_python: str, constraints: Path):
    name = f"{entry.host}-{re.sub(r'[^a-z0-9]+', '-', entry.label)}"
    env_dir = work / "envs" / name
    log = work / f"{name}.log"
    t0 = time.time()
    print(f"== {entry.host} [{entry.label}]: {' '.join(entry.requirements)}", flush=True)
    python = make_env(env_dir, base_python)
    # pip itself comes from the base; it installs into the venv it runs in
    install = run(
        [python, "-m", "pip", "install", "-q", "-c", str(constraints), *entry.requirements]
    )
    row = {
        "host": DIST[entry.host],
        "module": f"alamp_fast.integrations.{entry.host}",
        "label": entry.label,
        "in_range": entry.in_range,
        "requirements": list(entry.requirements),
    }
    logs = [f"$ pip install {' '.join(entry.requirements)}\n", install.stdout, install.stderr]
    if install.returncode != 0:
        row.update(status="install failed", install_error=install.stderr.strip()[-2000:])
    else:
        row["versions"] = versions(python, (DIST[entry.host], *COMMON_DISTS))
        junit = work / f"{name}.xml"
        junit.unlink(missing_ok=True)
        tests = [f"tests/integrations/test_integrations_{entry.host}.py",
                 "tests/integrations/test_integrations_docs.py"]
        cmd = [python, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q",
               "-k", entry.host, f"--junitxml={junit}", *tests]
        env = dict(os.environ, PYTHONPATH=str(src), PYTHONNOUSERSITE="1")
        env.pop("VIRTUAL_ENV", None)
        res = run(cmd, cwd=src, env=env)
        logs += ["$ " + " ".join(cmd[1:]) + "\n", res.stdout, res.stderr]
        counts = junit_counts(junit)
        row.update(counts)
        row["status"] = "pass" if res.returncode == 0 and counts.get("passed", 0) > 0 else "fail"
        row["pytest_rc"] = res.returncode
        tail = [ln for ln in res.stdout.splitlines() if ln.strip()]
        row["summary"] = tail[-1] if tail else ""
    row["seconds"] = round(time.time() - t0, 1)
    log.write_text("".join(logs))
    shutil.rmtree(env_dir, ignore_errors=True)
    print(f"   -> {row['status']} {row.get('summary', '')} ({row['seconds']} s; log {log})",
          flush=True)
    return row


def table(report: dict) -> str:
    """The markdown table of docs/integrations.md, from a results file."""
    lines = [
        "| host | version | scikit-learn | numpy | torch | adapter tests + docs example |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        v = row.get("versions", {})
        host_v = v.get(row["host"]) or row["requirements"][0].split("==")[-1]
        if row["status"] == "install failed":
            result = "does not install"
        else:
            result = f"{row['status']}: {row['passed']} passed, {row['failed']} failed"
            if row["skipped"]:
                result += f", {row['skipped']} skipped"
        lines.append(
            f"| {row['host']} | {host_v} ({row['label']}) | {v.get('scikit-learn', '-')} | "
            f"{v.get('numpy', '-')} | {v.get('torch') or '-'} | {result} |"
        )
    return "\n".join(lines)


def write_docs(report: dict, doc: Path = DOC) -> None:
    """Put :func:`table` between the adapters-matrix markers of docs/integrations.md."""
    text = doc.read_text(encoding="utf-8")
    new, count = MARKERS.subn(lambda m: m.group(1) + table(report) + "\n" + m.group(2), text)
    if count != 1:
        raise SystemExit(f"{doc}: expected one pair of adapters-matrix markers, found {count}")
    doc.write_text(new, encoding="utf-8")
    print(f"updated {doc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(DIST), action="append",
                   help="run only this host's rows (repeatable); the others are kept")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "alamp-adapters",
                   help="folder for the environments, logs and the source snapshot")
    p.add_argument("--base", default=sys.executable, help="python of the base environment")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (JSON)")
    p.add_argument("--table", action="store_true", help="print the docs table of --out and exit")
    p.add_argument("--docs", action="store_true",
                   help="write the table of --out into docs/integrations.md and exit")
    args = p.parse_args(argv)
    if args.table or args.docs:
        report = json.loads(args.out.read_text())
        if args.docs:
            write_docs(report)
        else:
            print(table(report))
        return 0

    args.work.mkdir(parents=True, exist_ok=True)
    src = args.work / "src"
    commit = snapshot(src)
    torch_v = versions(args.base, ("torch",))["torch"]
    constraints = args.work / "constraints.txt"
    constraints.write_text(f"torch=={torch_v.split('+')[0]}\n" if torch_v else "")

    old = json.loads(args.out.read_text()) if args.out.exists() and args.only else {}
    kept = [r for r in old.get("rows", []) if args.only and r["module"].rsplit(".", 1)[1]
            not in args.only]
    entries = [e for e in MATRIX if not args.only or e.host in args.only]
    t0 = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for entry in entries:
        rows.append(run_entry(entry, work=args.work, src=src, base_python=args.base,
                              constraints=constraints))
        rows[-1]["commit"] = commit  # rows kept from an earlier --only run keep theirs
    order = {(e.host, e.label): i for i, e in enumerate(MATRIX)}
    rows = sorted(kept + rows, key=lambda r: order.get(
        (r["module"].rsplit(".", 1)[1], r["label"]), 99))
    newest = {d: newest_release(d, args.base) for d in DIST.values()}
    report = {
        "command": ".venv/bin/python .ci/adapters.py",
        "commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_s": round(time.time() - t0, 1),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "newest_on_index": newest,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    print(table(report))
    if args.out == RESULTS:
        write_docs(report)
    for entry in MATRIX:
        pinned = entry.requirements[0].split("==")[1]
        if "current" in entry.label and newest.get(DIST[entry.host]) not in (None, pinned):
            print(f"note: {DIST[entry.host]} {newest[DIST[entry.host]]} is out; the matrix's "
                  f"current is {pinned}")
    # a version outside the range may fail; one inside must pass
    return 0 if all(r["status"] == "pass" for r in rows if r["in_range"]) else 1


if __name__ == "__main__":
    sys.exit(main())
