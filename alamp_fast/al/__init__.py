"""The active-learning room: strategies, the one loop, the simulated protocol, data and results.

* :mod:`alamp_fast.al.strategies` -- the acquisition functions as stateful objects
  (:func:`~alamp_fast.al.strategies.get_strategy`, :class:`~alamp_fast.al.strategies.QueryResult`),
  alamp's memory between iterations included;
* :mod:`alamp_fast.al.results` -- :class:`RunRecord`, :class:`SimulationResult`, the one seed
  derivation (:func:`derive_seed`, :func:`run_seed`, :func:`strategy_seed`, :func:`fit_seed`);
* :mod:`alamp_fast.al.loop` -- :func:`run_protocol`, the loop that the SVM scheme
  (:func:`alamp_fast.al.protocol.simulate`) and the fine-tuning scheme
  (:func:`alamp_fast.finetune.scheme.simulate_ft`) both run, and the per-(strategy, run)
  checkpoints that make an interrupted simulation resumable;
* :mod:`alamp_fast.al.classifiers` -- the SVM scheme's classifiers by name and how a fitted one
  scores the pool (full probabilities, or the fused top-2 margins);
* :mod:`alamp_fast.al.protocol` -- :func:`~alamp_fast.al.protocol.simulate`, the paper's
  protocol with the SVM scheme (on one machine or a Dask cluster);
* :mod:`alamp_fast.al.datasets` -- feature sets from files or scikit-learn's digits;
* :mod:`alamp_fast.al.imbalance` -- the imbalance ratio and imbalanced subsampling;
* :mod:`alamp_fast.al.report` -- ``results.json``, ``results.csv`` and the plots of a run.

Importing this package loads only the loop and its records (numpy); the other modules are
imported by name. The loop imports neither :mod:`alamp_fast.al.protocol` nor
:mod:`alamp_fast.finetune`: both schemes sit above it. The old flat paths
(``alamp_fast.strategies``, ``alamp_fast.protocol``, ...) still import, with a
``DeprecationWarning``, as aliases of these modules.
"""

from alamp_fast.al.loop import Checkpoint, PoolView, ProtocolSetup, prepare_protocol, run_protocol
from alamp_fast.al.results import (
    RunRecord,
    SimulationResult,
    derive_seed,
    fit_seed,
    run_seed,
    strategy_seed,
)

__all__ = [
    "Checkpoint",
    "PoolView",
    "ProtocolSetup",
    "RunRecord",
    "SimulationResult",
    "derive_seed",
    "fit_seed",
    "prepare_protocol",
    "run_protocol",
    "run_seed",
    "strategy_seed",
]
