"""Regenerate the README's result tables from the JSON files under benchmarks/results/.

Each table sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers in README.md
and is rebuilt from one results file; a table whose file is missing is left as it is. Run::

    python benchmarks/make_readme.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _fmt_sizes(sizes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sizes.items() if k != "dtype") + (
        f" ({sizes['dtype']})" if "dtype" in sizes else ""
    )


def cpu_kernels_table(report: dict) -> str:
    rows = [
        "| kernel | sizes | alamp_fast ms | GB/s | % of read bandwidth | reference | speed-up |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for r in report["results"]:
        if r["provider"] != "alamp_fast":
            continue
        ratio = r.get("speedup_vs_reference")
        rows.append(
            f"| {r['kernel']} | {_fmt_sizes(r['sizes'])} | {r['min_s'] * 1e3:.2f} | "
            f"{r['gb_per_s']:.1f} | {100 * r['fraction_of_bandwidth']:.0f}% | {r['reference']} | "
            f"{f'{ratio:.1f}x' if ratio else '-'} |"
        )
    dev = report["device"]
    rows.append("")
    rows.append(
        f"Machine: {dev['name']}, {dev['cores']} cores ({dev['numba_threads']} numba threads), "
        f"read bandwidth {report['read_bandwidth_gb_per_s']:.1f} GB/s measured in the same run; "
        f"commit `{(report.get('commit') or 'uncommitted')[:10]}`, numpy "
        f"{report['versions']['numpy']}, numba {report['versions']['numba']}. "
        f"Source: `benchmarks/results/{report['_file']}`."
    )
    return "\n".join(rows)


TABLES = {"cpu-kernels": ("cpu_kernels.json", cpu_kernels_table)}


def render(readme: str) -> str:
    for name, (filename, build) in TABLES.items():
        path = RESULTS / filename
        if not path.exists():
            continue
        report = json.loads(path.read_text())
        report["_file"] = filename
        table = build(report)
        pattern = re.compile(
            rf"(<!-- {re.escape(name)}:start -->\n).*?(<!-- {re.escape(name)}:end -->)", re.S
        )
        readme, count = pattern.subn(
            lambda m, table=table: m.group(1) + table + "\n" + m.group(2), readme
        )
        if count == 0:
            print(f"README has no {name} markers", file=sys.stderr)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
