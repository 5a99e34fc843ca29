"""The active-learning loop room: one loop for every scheme, its seeds, records and checkpoints.

* :mod:`alamp_fast.al.results` -- :class:`RunRecord`, :class:`SimulationResult`, the one seed
  derivation (:func:`derive_seed`, :func:`run_seed`, :func:`strategy_seed`, :func:`fit_seed`);
* :mod:`alamp_fast.al.loop` -- :func:`run_protocol`, the loop that the SVM scheme
  (:func:`alamp_fast.protocol.simulate`) and the fine-tuning scheme
  (:func:`alamp_fast.finetune.scheme.simulate_ft`) both run, and the per-(strategy, run)
  checkpoints that make an interrupted simulation resumable.

Neither imports :mod:`alamp_fast.protocol` nor :mod:`alamp_fast.finetune`: both schemes sit
above this room.
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
