"""Results files of a simulation: ``results.json``, ``results.csv`` and PNG plots.

``results.json`` (``"format": "alamp_fast.simulate/1"``)::

    {"format": ..., "config": {...}, "dataset": {...}, "versions": {...}, "machine": {...},
     "timing": {"total_s": ...},
     "strategies": {NAME: {"labeled": [...], "accuracy_mean": [...], "accuracy_std": [...],
                           "mean_accuracy": x, "gain_over_random": x | null,
                           "samples_to_target": {"0.9": n | null}, "ir_mean": [...], ...,
                           "runs": [{"run": 0, "seed": ..., "accuracy": [...], ...}]}}}

Accuracies are fractions in [0, 1]; times are seconds. ``results.csv`` has one row per
strategy x run x iteration. The plots need matplotlib (``pip install 'alamp_fast[plot]'``):

``accuracy.png``
    small multiples, one panel per strategy: its mean test accuracy over runs with a band of
    +/- one standard deviation over runs, against random (dashed) and, faint, the others;
``imbalance.png``
    the imbalance ratio of the labeled set against the labeled count, per strategy;
``diversification.png`` (when a strategy and its ``-div`` variant both ran)
    each pair side by side: accuracy and imbalance ratio (the paper's Fig. 5).

Every figure carries a caption saying what the lines and bands are.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "FORMAT",
    "machine",
    "plot_accuracy",
    "plot_diversification",
    "plot_imbalance",
    "summary_table",
    "versions",
    "write_csv",
    "write_results",
]

FORMAT = "alamp_fast.simulate/1"

_CSV_FIELDS = (
    "strategy",
    "run",
    "seed",
    "iteration",
    "labeled",
    "accuracy",
    "balanced_accuracy",
    "ir",
    "fit_s",
    "predict_s",
    "query_s",
)


def versions() -> dict:
    """Versions of Python and of the libraries a result depends on."""
    out = {"python": platform.python_version()}
    for mod in ("alamp_fast", "numpy", "scipy", "sklearn", "numba", "matplotlib"):
        module = sys.modules.get(mod)
        if module is not None:
            out[mod] = getattr(module, "__version__", "unknown")
            continue
        try:  # not imported: the installed version, without importing it (matplotlib: 0.3 s)
            out[mod] = importlib.metadata.version("scikit-learn" if mod == "sklearn" else mod)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict:
    """The machine a result was measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }


def write_csv(result, path) -> Path:
    """One row per strategy x run x iteration (see ``_CSV_FIELDS``)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_CSV_FIELDS)
        for name in result.strategies:
            for r in result.records[name]:
                for it in range(r.labeled.size):
                    writer.writerow(
                        [
                            name,
                            r.run,
                            r.seed,
                            it,
                            int(r.labeled[it]),
                            f"{r.accuracy[it]:.6f}",
                            f"{r.balanced_accuracy[it]:.6f}",
                            f"{r.ir[it]:.6f}",
                            f"{r.fit_s[it]:.6f}",
                            f"{r.predict_s[it]:.6f}",
                            f"{r.query_s[it]:.6f}",
                        ]
                    )
    return path


def write_results(
    result, out_dir, *, plots: bool = True, include_order: bool = False, extra: dict | None = None
) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and (with ``plots``) two PNGs into ``out_dir``.

    Parameters
    ----------
    result : SimulationResult
        What :func:`alamp_fast.al.protocol.simulate` returned.
    out_dir : str or PathLike
        Created if missing; existing files of the same names are replaced.
    plots : bool
        Write ``accuracy.png``, ``imbalance.png`` and, when a strategy ran with its ``-div``
        variant, ``diversification.png`` (needs matplotlib).
    include_order : bool
        Store every run's labeled rows, in labeling order, in ``results.json``.
    extra : dict, optional
        Merged into the top level of ``results.json`` (e.g. a benchmark's own fields).

    Returns
    -------
    dict
        ``{"json": path, "csv": path[, "accuracy_png": path, "imbalance_png": path]}``.

    Examples
    --------
    >>> import tempfile
    >>> from alamp_fast.al.datasets import load_digits
    >>> from alamp_fast.al.protocol import simulate
    >>> res = simulate(load_digits(), strategies=["random", "margin"], init=20, step=20,
    ...                iterations=1, runs=1)
    >>> sorted(write_results(res, tempfile.mkdtemp(), plots=False))
    ['csv', 'json']
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        **result.to_dict(include_order=include_order),
        "versions": versions(),
        "machine": machine(),
        **(extra or {}),
    }
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}
    tmp = paths["json"].with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(_jsonable(doc), f, indent=1, allow_nan=False)
    os.replace(tmp, paths["json"])
    write_csv(result, paths["csv"])
    if plots:
        paths["accuracy_png"] = plot_accuracy(doc, out_dir / "accuracy.png")
        paths["imbalance_png"] = plot_imbalance(doc, out_dir / "imbalance.png")
        if _div_pairs(doc):
            paths["diversification_png"] = plot_diversification(
                doc, out_dir / "diversification.png"
            )
    return paths


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _figure(figsize=(7.0, 4.5)):
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "PNG plots need matplotlib: pip install 'alamp_fast[plot]' (or pass --no-plots)"
        ) from exc
    # The object API, not pyplot: no global state, no GUI backend needed.
    return Figure(figsize=figsize, layout="constrained")


def _title(doc: dict) -> str:
    cfg = doc.get("config", {})
    ds = doc.get("dataset", {})
    cs = " cost-sensitive" if cfg.get("cost_sensitive") else ""
    return (
        f"{ds.get('name', '')}: {cfg.get('classifier', '')}{cs}, init {cfg.get('init')}, "
        f"{cfg.get('iterations')} x {cfg.get('step')}, {cfg.get('runs')} run(s)"
    )


def _runs(doc: dict) -> int:
    return int(doc.get("config", {}).get("runs") or 1)


def _caption(fig, text: str) -> None:
    import textwrap

    width = int(fig.get_figwidth() * 15)  # about 15 characters of 8-point text an inch
    fig.supxlabel(textwrap.fill(text, width), fontsize=8, color="0.25")


def _curve(s: dict, key: str = "accuracy"):
    x = np.asarray(s["labeled"])
    m = 100 * np.asarray(s[f"{key}_mean"])
    sd = 100 * np.asarray(s.get(f"{key}_std", np.zeros_like(m)))
    return x, m, sd


def plot_accuracy(doc: dict, path) -> Path:
    """Test accuracy against labeled samples: one panel per strategy (small multiples).

    Each panel shows its strategy's mean accuracy over runs with a band of +/- one standard
    deviation over runs, random's (dashed, with its band) for reference, and the other
    strategies as faint grey lines; the legend gives the mean accuracy over the cycle.
    """
    strategies = doc["strategies"]
    names = list(strategies)
    n = len(names)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = _figure((3.2 * cols + 0.4, 2.6 * rows + 0.9))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    colors = [f"C{i % 10}" for i in range(n)]
    base = strategies.get("random")
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        for other in names:
            if other not in (name, "random"):
                x, m, _ = _curve(strategies[other])
                ax.plot(x, m, color="0.75", lw=0.8)
        if base is not None and name != "random":
            x, m, sd = _curve(base)
            ax.plot(x, m, color="k", ls="--", lw=1.2, label=f"random ({m.mean():.2f})")
            ax.fill_between(x, m - sd, m + sd, color="k", alpha=0.08, lw=0)
        s = strategies[name]
        x, m, sd = _curve(s)
        ax.plot(x, m, color=colors[i], marker="o", ms=2.5, lw=1.6,
                label=f"{name} ({100 * s['mean_accuracy']:.2f})")
        ax.fill_between(x, m - sd, m + sd, color=colors[i], alpha=0.2, lw=0)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        if i % cols == 0:
            ax.set_ylabel("test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(_title(doc), fontsize=9)
    _caption(
        fig,
        f"x: labeled samples. Lines: mean test accuracy over {_runs(doc)} run(s); bands: +/- one "
        "standard deviation over runs. Dashed: random; grey: the other strategies; "
        "legend: mean accuracy over the cycle (%).",
    )
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_imbalance(doc: dict, path) -> Path:
    """Imbalance ratio (std/mean of per-class labeled counts) against labeled samples."""
    fig = _figure((7.0, 4.8))
    ax = fig.add_subplot()
    for name, s in doc["strategies"].items():
        style = {"ls": "--"} if name.endswith("-div") else {}
        ax.plot(s["labeled"], s["ir_mean"], marker="o", ms=3, label=name, **style)
    pool_ir = doc.get("dataset", {}).get("pool_ir")
    if pool_ir is not None:
        ax.axhline(pool_ir, color="k", ls=":", lw=1, label=f"pool ({pool_ir:.2f})")
    ax.set_ylabel("ir = std / mean of per-class labeled counts")
    ax.set_title(_title(doc), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    _caption(
        fig,
        f"x: labeled samples. Lines: imbalance ratio of the labeled set, mean over {_runs(doc)} "
        "run(s) (0 = balanced); dashed: diversified strategies; dotted: the whole pool.",
    )
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _div_pairs(doc: dict) -> list[tuple[str, str]]:
    names = set(doc.get("strategies", {}))
    return [(b, f"{b}-div") for b in ("random", "margin", "alamp") if {b, f"{b}-div"} <= names]


def plot_diversification(doc: dict, path) -> Path:
    """Each strategy against its ``-div`` variant: accuracy (top) and imbalance ratio (bottom)."""
    pairs = _div_pairs(doc)
    if not pairs:
        raise ValueError("no strategy ran together with its -div variant")
    fig = _figure((3.3 * len(pairs) + 0.4, 5.6))
    axes = fig.subplots(2, len(pairs), sharex=True, squeeze=False)
    for j, (plain, div) in enumerate(pairs):
        for name, color in ((plain, "C0"), (div, "C3")):
            s = doc["strategies"][name]
            x, m, sd = _curve(s)
            axes[0][j].plot(x, m, color=color, marker="o", ms=2.5,
                            label=f"{name} ({100 * s['mean_accuracy']:.2f})")
            axes[0][j].fill_between(x, m - sd, m + sd, color=color, alpha=0.2, lw=0)
            axes[1][j].plot(s["labeled"], s["ir_mean"], color=color, marker="o", ms=2.5,
                            label=name)
        axes[0][j].set_title(f"{plain} vs {div}", fontsize=9)
        axes[0][j].legend(fontsize=7, loc="lower right")
        axes[1][j].legend(fontsize=7)
        for ax in (axes[0][j], axes[1][j]):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("test accuracy (%)", fontsize=8)
    axes[1][0].set_ylabel("ir of the labeled set", fontsize=8)
    fig.suptitle(_title(doc), fontsize=9)
    _caption(
        fig,
        f"x: labeled samples. Top: mean test accuracy over {_runs(doc)} run(s), bands +/- one "
        "standard deviation over runs (legend: mean over the cycle, %). Bottom: imbalance "
        "ratio of the labeled set (mean over runs).",
    )
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def summary_table(doc: dict, *, markdown: bool = False) -> str:
    """A table of the summary metrics of a ``results.json`` document (text or markdown).

    Examples
    --------
    >>> doc = {"strategies": {"random": {"labeled": [10, 20], "accuracy_mean": [0.5, 0.7],
    ...        "mean_accuracy": 0.6, "accuracy_std": [0, 0], "gain_over_random": 0.0,
    ...        "mean_accuracy_std": 0.0, "ir_mean": [0.2, 0.1], "query_s_mean": [0.0, 0.0],
    ...        "samples_to_target": {"0.7": 20}}}}
    >>> print(summary_table(doc))  # doctest: +NORMALIZE_WHITESPACE
    strategy  mean acc (%)  gain vs random  final acc (%)  final ir  query ms/it  n@0.7
    random    60.00 +- 0.00 +0.00           70.00          0.100     0.0          20
    """
    rows = []
    targets = None
    for name, s in doc["strategies"].items():
        targets = list(s.get("samples_to_target", {})) if targets is None else targets
        gain = s.get("gain_over_random")
        q = s.get("query_s_mean", [])
        q_ms = 1000 * float(np.mean(q[:-1])) if len(q) > 1 else 0.0
        rows.append(
            [
                name,
                f"{100 * s['mean_accuracy']:.2f} +- {100 * s.get('mean_accuracy_std', 0.0):.2f}",
                "-" if gain is None else f"{100 * gain:+.2f}",
                f"{100 * s['accuracy_mean'][-1]:.2f}",
                f"{s['ir_mean'][-1]:.3f}",
                f"{q_ms:.1f}",
                *[str(s["samples_to_target"].get(t) or "-") for t in targets],
            ]
        )
    header = [
        "strategy",
        "mean acc (%)",
        "gain vs random",
        "final acc (%)",
        "final ir",
        "query ms/it",
        *[f"n@{t}" for t in targets or []],
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r).replace("+-", "±") + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)
