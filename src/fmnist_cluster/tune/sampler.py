"""The sampler of a ``tune`` study: Optuna's TPE, its random state set afresh before every trial
from the run's seed and the trial's number.

Trial numbers are unique in a study, whichever worker, process or machine takes the trial, so
no two trials draw from the same random state (no worker repeats another's parameter sets),
and the parameters a trial draws depend only on the seed, its number and the trials the study
holds when it starts, never on a host or a process id. A study run twice by one worker with
the same seed, on any storage (the journal file, SQLite, PostgreSQL), thus draws the same
parameter sets; with several workers the trials a trial sees depend on their timing.
TPE keeps no other state between trials: it reads the finished (and, with ``constant_liar``,
the running) trials from the study each time.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.samplers import BaseSampler


def trial_seed(seed: int, number: int) -> int:
    """The random state of trial ``number`` of a study run with ``seed``: distinct for distinct
    numbers (``numpy.random.SeedSequence`` of the two)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """A sampler made anew by ``make(trial_seed(seed, number))`` before each trial, which then
    samples that trial.

    Parameters
    ----------
    make : callable
        Takes a seed, returns the sampler (for ``tune``: a TPE sampler).
    seed : int
        The run's seed.
    """

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._current = make(seed)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self._current = self._make(trial_seed(self._seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: optuna.trial.FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: Any, values: Any) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


def tpe_sampler(seed: int, n_startup_trials: int) -> TrialSeededSampler:
    """Multivariate TPE with a constant liar (running trials count as bad, so parallel workers
    spread out), reseeded for every trial by :class:`TrialSeededSampler`."""

    def make(trial_seed: int) -> BaseSampler:
        with warnings.catch_warnings():  # multivariate and constant_liar are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=trial_seed, multivariate=True, constant_liar=True, n_startup_trials=n_startup_trials
            )

    return TrialSeededSampler(make, seed)
