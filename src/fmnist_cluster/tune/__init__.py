"""The ``tune`` stage: Bayesian optimisation of ``train-som`` settings with Optuna.

One module per concept: the search space (:mod:`.space`), one study and its trials
(:mod:`.trials`), worker processes (:mod:`.workers`), what the stage writes (:mod:`.results`)
and the stage itself (:mod:`.stage`, which describes the objectives and the storage).
"""

from fmnist_cluster.tune.results import NAMES, OBJECTIVES, qe_te_study, trial_qe_te, write_results
from fmnist_cluster.tune.space import apply_params, check_space, suggest
from fmnist_cluster.tune.stage import run_tune
from fmnist_cluster.tune.trials import finished_trials, held_out_rows, open_study, work
from fmnist_cluster.tune.workers import from_interrupt, run_workers

__all__ = [
    "NAMES",
    "OBJECTIVES",
    "apply_params",
    "check_space",
    "finished_trials",
    "from_interrupt",
    "held_out_rows",
    "open_study",
    "qe_te_study",
    "run_tune",
    "run_workers",
    "suggest",
    "trial_qe_te",
    "work",
    "write_results",
]
