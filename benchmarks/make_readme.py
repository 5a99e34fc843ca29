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
            f", load average {report['load_average'][0]:.1f} at the start"
            + (
                f", {report['load_average_at_end'][0]:.1f} at the end"
                if report.get("load_average_at_end")
                else ""
            )
            + (" (**taken under load**)" if report.get("under_load") else "")
            + "; "
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


def _load_note(report: dict) -> str:
    la = report.get("load_average") or {}
    start = (la.get("start") or [None])[0]
    end = (la.get("end") or [None])[0]
    note = f"load average {start} at start, {end} at end"
    if report.get("under_load"):
        note += " (**figures taken under load**: the machine was shared)"
    return note


def coreset_table(report: dict) -> str:
    c = report["results"]["caltech"]
    z = c["sizes"]
    rows = [
        "| k-center, Caltech-101 train features | condition | ms (min) | x one-pass floor "
        "| floor ms |",
        "|---|---|---:|---:|---:|",
    ]
    for cond in ("idle", "other_core_busy"):
        r = c[cond]
        for k, label in (
            ("query", "first query"),
            ("query_with_state", "later query (state)"),
            ("query_eager_steps", "first query, eager steps (before)"),
        ):
            if k not in r:
                continue
            rows.append(
                f"| {label} | {cond.replace('_', ' ')} | {r[k]['min_s'] * 1e3:.1f} | "
                f"{r[k]['ratio_to_floor']:.2f} | {r['floor']['min_s'] * 1e3:.1f} |"
            )
    f = report["results"].get("first_search")
    rows.append("")
    rows.append(
        f"Pool {z['n']:,} x {z['d']} float32, {z['labeled']} labeled, b = {z['b']}. Floor: one "
        "float32 GEMM of the pool against the labeled rows plus b GEMVs `X @ c`, measured in "
        "the same run. With the other core busy the first query takes "
        f"{c['busy_over_idle']:.2f}x its idle time"
        + (
            f" (the eager steps: {c['eager_steps_busy_over_idle']:.2f}x)"
            if "eager_steps_busy_over_idle" in c
            else ""
        )
        + "."
        + (
            f" The lazy steps measured {c['lazy_distances']['measured']:,} row-center "
            f"distances, {c['lazy_distances']['share'] * 100:.1f}% of the eager steps' "
            f"{c['lazy_distances']['eager']:,}."
            if "lazy_distances" in c
            else ""
        )
        + (
            f" First nearest-labeled search at {f['sizes']['n']:,} x {f['sizes']['d']}: "
            f"{f['nearest_labeled_search']['min_s']:.2f} s, {f['ratio_to_gemm']:.2f}x a lone "
            f"GEMM of the same size ({f['lone_gemm']['min_s']:.2f} s)."
            if f
            else ""
        )
        + f" {_load_note(report)}. Source: `benchmarks/results/{report['_file']}` "
        "(`python benchmarks/bench_coreset.py`)."
    )
    return "\n".join(rows)


def float16_table(report: dict) -> str:
    r = report["results"]
    z = report["sizes"]
    rows = [
        "| top2_margin input | ms (min) | input GB/s | x float32 |",
        "|---|---:|---:|---:|",
    ]
    for k in ("float32", "float16", "float16_software_widening"):
        ratio = r[k].get("ratio_to_float32")
        rows.append(
            f"| {k.replace('_', ' ')} | {r[k]['min_s'] * 1e3:.1f} | "
            f"{r[k]['input_gb_per_s']:.1f} | {f'{ratio:.2f}' if ratio else '1'} |"
        )
    rows.append("")
    rows.append(
        f"{z['n']:,} x {z['classes']}; F16C on this CPU: {report.get('f16c')}; float16 results "
        f"bit-identical to the software widening: {report.get('bit_identical_to_software')}. "
        f"{_load_note(report)}. Source: `benchmarks/results/{report['_file']}` "
        "(`python benchmarks/bench_float16.py`)."
    )
    return "\n".join(rows)


def faiss_table(report: dict) -> str:
    rows = [
        "| pool | backend | s (min) | x alamp_fast | same picks as exact | covering radius error |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in report["results"]:
        for name in ("alamp_fast", "faiss_flat", "faiss_hnsw"):
            x = r[name]
            ratio = x.get("ratio_to_alamp_fast", 1.0)
            rows.append(
                f"| {r['n']:,} x {r['d']} | {name.replace('_', ' ')} | {x['min_s']:.2f} | "
                f"{ratio:.2f} | {'yes' if x['same_picks_as_exact'] else 'no'} | "
                f"{x['covering_radius_error']:+.2e} |"
            )
    z = report["results"][0]
    rows.append("")
    rows.append(
        f"float32 Gaussian pools, {z['labeled']} labeled, b = {z['b']}; FAISS "
        f"{report.get('faiss_version')}. Covering radius (exact, float64) relative to the exact "
        f"algorithm's. {_load_note(report)}. Source: `benchmarks/results/{report['_file']}` "
        "(`python benchmarks/bench_faiss.py`)."
    )
    return "\n".join(rows)


def cold_start_table(report: dict) -> str:
    rows = [
        "| condition | tree | first run, empty numba cache (s) | warm run (s) |",
        "|---|---|---:|---:|",
    ]
    ratios = []
    for cond, trees in report["results"].items():
        for name, runs in trees.items():
            if not isinstance(runs, list):
                continue
            cold = min(x["cold"]["wall_s"] for x in runs)
            warm = min(x["warm"]["wall_s"] for x in runs)
            tree = name if name != "reference" else f"before (`{report['reference_commit']}`)"
            rows.append(f"| {cond.replace('_', ' ')} | {tree} | {cold:.1f} | {warm:.1f} |")
        if "cold_ratio_current_to_reference" in trees:
            ratios.append(f"{cond.replace('_', ' ')} {trees['cold_ratio_current_to_reference']:.2f}x")
    rows.append("")
    rows.append(
        f"`{report['command']}` in a fresh process (scikit-learn's digits, default protocol). "
        + (f"Cold time after/before: {', '.join(ratios)}. " if ratios else "")
        + f"{_load_note(report)}. Source: `benchmarks/results/{report['_file']}` "
        "(`python benchmarks/bench_cold_start.py --ref COMMIT --busy`)."
    )
    return "\n".join(rows)


def _markdown_file(path: Path):
    def build(_report):
        return path.read_text().strip()

    return build


TABLES = {
    "cpu-kernels": ("cpu_kernels.json", cpu_kernels_table),
    "integrations": ("integrations.json", integrations_table),
    "outofcore": ("outofcore.json", outofcore_table),
    "coreset-cpu": ("coreset_cpu.json", coreset_table),
    "float16-cpu": ("float16_cpu.json", float16_table),
    "cold-start": ("cold_start.json", cold_start_table),
    "faiss-cpu": ("faiss_cpu.json", faiss_table),
    "protocol-scale": ("protocol_scale.json", protocol_scale_text),
    # benchmarks/reproduce_paper.py --out benchmarks/results/reproduce_short (docs/reproduction.md)
    **{
        f"paper-{name}": (
            f"reproduce_short/{name}/results.json",
            _markdown_file(RESULTS / "reproduce_short" / name / "table.md"),
        )
        for name in ("caltech101", "cifar10", "cifar10-imb")
    },
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
