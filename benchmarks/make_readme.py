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
sys.path.insert(0, str(ROOT / "benchmarks"))


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
        f"read bandwidth {report['read_bandwidth_gb_per_s']:.1f} GB/s measured in the same run"
        + (
            f", load average {report['load_average'][0]:.1f} at the start; "
            if report.get("load_average")
            else "; "
        )
        + f"commit `{(report.get('commit') or 'uncommitted')[:10]}`, numpy "
        f"{report['versions']['numpy']}, numba {report['versions']['numba']}. Bandwidth "
        "counts the bytes a kernel must move; small inputs are partly cache-resident and can "
        "exceed 100% of the DRAM read bandwidth. "
        f"Source: `benchmarks/results/{report['_file']}`."
    )
    return "\n".join(rows)


def integrations_table(report: dict) -> str:
    from bench_integrations import readme_table

    return readme_table(report)


def outofcore_table(report: dict) -> str:
    s, cfg = report["summary"], report["config"]
    gb = cfg["probs_bytes"] / 1e9
    rows = [
        "| phase | GB/s | peak memory (GiB) |",
        "|---|---:|---:|",
        f"| plain read of the file | {s['read_gb_per_s']:.2f} | |",
        f"| one process: scoring | {s['single_score_gb_per_s']:.2f} | |",
        f"| one process: scoring + select_top + diversify | "
        f"{s['single_end_to_end_gb_per_s']:.2f} | {s['single_peak_rss_gib']:.2f} |",
        f"| {cfg['workers']}-worker LocalCluster: scoring | {s['dask_score_gb_per_s']:.2f} | |",
        f"| {cfg['workers']}-worker LocalCluster: scoring + selections | "
        f"{s['dask_end_to_end_gb_per_s']:.2f} | {s['dask_peak_rss_gib']:.2f} (all processes) |",
        "",
        f"Pool: {cfg['n']:,} x {cfg['classes']} {cfg['dtype']} probabilities on disk "
        f"({gb:.1f} GB), b = {cfg['b']}, page cache {cfg['page_cache']}; selections identical "
        f"across phases: {s['dask_identical']}. Load average at start "
        f"{report['load_average_at_start'][0]:.1f} (the machine was shared). "
        "Source: `benchmarks/results/outofcore.json` (`python benchmarks/bench_outofcore.py`).",
    ]
    return "\n".join(rows)


def protocol_scale_text(report: dict) -> str:
    cfg = report["config"]
    return (
        f"Paper protocol at scale: {cfg['n_pool']:,}-sample pool, {cfg['n_classes']} classes, "
        f"{cfg['n_features']}-d ({cfg['data']}), init {cfg['init']}, {cfg['iterations']} x "
        f"{cfg['step']}, strategies {', '.join(cfg['strategies'])}, {cfg['runs']} run, "
        f"classifier {cfg['classifier']}: **{report['total_s']:.0f} s** in all on this 2-core "
        f"machine (target {report['target_s']:.0f} s). Per-iteration fit/query times are in "
        "`benchmarks/results/protocol_scale.json` (`python benchmarks/protocol_scale.py`)."
    )


def _markdown_file(path: Path):
    def build(_report):
        return path.read_text().strip()

    return build


TABLES = {
    "cpu-kernels": ("cpu_kernels.json", cpu_kernels_table),
    "integrations": ("integrations.json", integrations_table),
    "outofcore": ("outofcore.json", outofcore_table),
    "protocol-scale": ("protocol_scale.json", protocol_scale_text),
    "paper-caltech101": (
        "paper_caltech101/results.json",
        _markdown_file(RESULTS / "paper_caltech101" / "table.md"),
    ),
    "paper-cifar10": (
        "paper_cifar10/results.json",
        _markdown_file(RESULTS / "paper_cifar10" / "table.md"),
    ),
}


def gpu_table(reports: list[dict]) -> str:
    """The GPU section's table from ``benchmarks/results/gpu_<card>.json`` (one block per card,
    written by ``benchmarks/device_check.sh`` or ``benchmarks/bench_gpu.py`` on the device)."""
    out = []
    for report in reports:
        gpu = report.get("gpu", {})
        check = report.get("device_check", {})
        head = f"**{gpu.get('name', report.get('card', '?'))}**"
        facts = [f"commit {str(report.get('commit', '?'))[:10]}"]
        if gpu.get("cuda_driver"):
            facts.append(f"driver/runtime {gpu['cuda_driver']}/{gpu.get('cuda_runtime')}")
        if report.get("copy_bandwidth_gb_per_s"):
            facts.append(f"device copy {report['copy_bandwidth_gb_per_s']:.0f} GB/s")
        if check:
            states = [f"{s['step']} {s['status']}" for s in check.get("steps", [])]
            facts.append(f"device check in {check.get('wall_s', '?')} s: " + ", ".join(states))
        out.append(f"{head} ({'; '.join(facts)}). Source: `benchmarks/results/{report['_file']}`.")
        out.append("")
        out += [
            "| kernel | sizes | provider | min ms | GB/s | % of copy bandwidth | speed-up vs reference |",
            "|---|---|---|---:|---:|---:|---:|",
        ]
        for r in report.get("results", []):
            speed = r.get("speedup_vs_reference")
            out.append(
                f"| {r['kernel']} | {_fmt_sizes(r['sizes'])} | {r['provider']} | "
                f"{r['min_s'] * 1e3:.3f} | {r['gb_per_s']:.1f} | "
                f"{100 * r['fraction_of_copy_bandwidth']:.0f}% | "
                + (f"{speed:.1f}x vs {r['reference']}" if speed else "") + " |"
            )
        targets = report.get("targets", {})
        if targets:
            out.append("")
            out.append("Targets: " + "; ".join(
                f"{k} = {v['value']:.3g} (target {v['target']}"
                + (", met" if v.get("met") else ", not met" if "met" in v else "") + ")"
                for k, v in targets.items()))
        out.append("")
    return "\n".join(out).strip()


def gpu_reports() -> list[dict]:
    """The device results present (the emulator's rehearsal output is never one of them)."""
    reports = []
    for path in sorted(RESULTS.glob("gpu_*.json")):
        if path.stem in ("gpu_emulator", "gpu_unknown"):
            continue
        report = json.loads(path.read_text())
        report["_file"] = path.name
        reports.append(report)
    return reports


def _replace(readme: str, name: str, table: str) -> str:
    pattern = re.compile(
        rf"(<!-- {re.escape(name)}:start -->\n).*?(<!-- {re.escape(name)}:end -->)", re.S
    )
    readme, count = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(2), readme)
    if count == 0:
        print(f"README has no {name} markers", file=sys.stderr)
    return readme


def render(readme: str) -> str:
    gpu = gpu_reports()
    if gpu:
        readme = _replace(readme, "gpu", gpu_table(gpu))
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
