"""Records of a simulation and the one seed derivation of the AL loop.

:class:`RunRecord` is one strategy's trajectory in one run, :class:`SimulationResult` what a
simulation returns (both schemes). Seeds: run ``r`` of a simulation with base seed ``s`` uses
:func:`run_seed` ``(s, r)`` for its initial batch and classifier; strategy ``name`` in that run
:func:`strategy_seed` ``(s, r, name)``; a network fitted at iteration ``i`` :func:`fit_seed`
``(run_seed, i)``. An annotation project with seed ``s`` is run 0 of ``simulate(seed=s)``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "RECORD_ARRAYS",
    "RunRecord",
    "SimulationResult",
    "derive_seed",
    "fit_seed",
    "run_seed",
    "strategy_seed",
]

#: The per-iteration arrays of a :class:`RunRecord` (checkpoints store exactly these).
RECORD_ARRAYS = (
    "labeled",
    "accuracy",
    "balanced_accuracy",
    "ir",
    "class_counts",
    "fit_s",
    "predict_s",
    "query_s",
    "order",
)


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integer parts (``np.random.SeedSequence``); the one derivation."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def run_seed(seed: int, run: int) -> int:
    """Seed of run ``run``: its initial batch and its classifiers' ``random_state``."""
    return derive_seed(seed, run)


def strategy_seed(seed: int, run: int, name: str) -> int:
    """Seed of strategy ``name`` in run ``run`` (adding a strategy changes no other's draws)."""
    return derive_seed(seed, run, zlib.crc32(name.encode()))


def fit_seed(run_seed_: int, iteration: int) -> int:
    """Seed of a model trained at ``iteration`` of a run (the same for every strategy)."""
    return derive_seed(run_seed_, iteration)


@dataclass
class RunRecord:
    """One strategy's trajectory in one run; every array has one entry per iteration."""

    strategy: str
    run: int
    seed: int
    labeled: np.ndarray
    accuracy: np.ndarray
    balanced_accuracy: np.ndarray
    ir: np.ndarray
    class_counts: np.ndarray
    fit_s: np.ndarray
    predict_s: np.ndarray
    query_s: np.ndarray
    #: Pool rows in the order they were labeled: the initial batch, then each query's picks
    #: (indices into the pool, i.e. into ``X_train[result.pool_rows]``).
    order: np.ndarray


@dataclass
class SimulationResult:
    """What :func:`simulate` returns: the configuration and every run's :class:`RunRecord`.

    ``records[name][run]`` is one trajectory; ``pool_rows`` are the rows of ``X_train`` that
    formed the pool (all of them unless ``imbalance`` subsampled it).
    """

    config: dict
    dataset: dict
    strategies: list[str]
    records: dict[str, list[RunRecord]]
    total_s: float = 0.0
    pool_rows: np.ndarray | None = field(default=None, repr=False)

    def summary(self, targets=None) -> dict[str, dict]:
        """Per-strategy summary metrics (JSON-ready).

        ``mean_accuracy`` is the mean over all iterations (initial batch included) of the
        run-averaged accuracy curve; ``gain_over_random`` its difference with random's (None
        without a random run); ``samples_to_target[t]`` the first labeled count at which the
        run-averaged accuracy reaches ``t`` (None if it never does).
        """
        targets = self.config.get("targets", ()) if targets is None else targets
        out: dict[str, dict] = {}
        for name in self.strategies:
            recs = self.records[name]
            acc = np.stack([r.accuracy for r in recs])
            bacc = np.stack([r.balanced_accuracy for r in recs])
            ir = np.stack([r.ir for r in recs])
            labeled = recs[0].labeled
            acc_mean = acc.mean(axis=0)
            s = {
                "labeled": labeled.tolist(),
                "accuracy_mean": acc_mean.tolist(),
                "accuracy_std": acc.std(axis=0).tolist(),
                "balanced_accuracy_mean": bacc.mean(axis=0).tolist(),
                "balanced_accuracy_std": bacc.std(axis=0).tolist(),
                "mean_accuracy": float(acc_mean.mean()),
                "mean_accuracy_std": float(acc.mean(axis=1).std()),
                "mean_balanced_accuracy": float(bacc.mean()),
                "final_accuracy": float(acc_mean[-1]),
                "ir_mean": ir.mean(axis=0).tolist(),
                "ir_std": ir.std(axis=0).tolist(),
                "class_counts_mean": np.stack([r.class_counts for r in recs]).mean(axis=0).tolist(),
                "fit_s_mean": np.stack([r.fit_s for r in recs]).mean(axis=0).tolist(),
                "predict_s_mean": np.stack([r.predict_s for r in recs]).mean(axis=0).tolist(),
                "query_s_mean": np.stack([r.query_s for r in recs]).mean(axis=0).tolist(),
                "samples_to_target": {
                    _target_key(t): _first_reach(labeled, acc_mean, t) for t in targets
                },
            }
            out[name] = s
        base = out.get("random")
        for s in out.values():
            s["gain_over_random"] = (
                None if base is None else s["mean_accuracy"] - base["mean_accuracy"]
            )
        return out

    def to_dict(self, *, include_runs: bool = True, include_order: bool = False) -> dict:
        """The whole result as JSON-ready Python objects (``results.json`` without versions)."""
        summary = self.summary()
        if include_runs:
            for name, s in summary.items():
                s["runs"] = [
                    {
                        "run": r.run,
                        "seed": r.seed,
                        "accuracy": r.accuracy.tolist(),
                        "balanced_accuracy": r.balanced_accuracy.tolist(),
                        "ir": r.ir.tolist(),
                        "fit_s": r.fit_s.tolist(),
                        "predict_s": r.predict_s.tolist(),
                        "query_s": r.query_s.tolist(),
                        **({"order": r.order.tolist()} if include_order else {}),
                    }
                    for r in self.records[name]
                ]
        return {
            "config": self.config,
            "dataset": self.dataset,
            "strategies": summary,
            "timing": {"total_s": self.total_s},
        }


def _target_key(t: float) -> str:
    return f"{float(t):g}"


def _first_reach(labeled: np.ndarray, curve: np.ndarray, target: float):
    hit = np.flatnonzero(curve >= target)
    return int(labeled[hit[0]]) if hit.size else None

