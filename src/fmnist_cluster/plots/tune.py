"""Figures of ``tune``. The history and the Pareto front are Optuna's own plots
(``optuna.visualization.matplotlib``) of the study, with what the stage adds marked on them:
the running best, the front joined and the chosen trial."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


@contextlib.contextmanager
def _optuna_plot() -> Iterator[Any]:
    """Optuna's matplotlib module, its "experimental" warning silenced and the ggplot style it
    switches on kept inside this block (it would otherwise restyle every later figure)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_matplotlib

    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield optuna_matplotlib


def _complete(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def tune_history(study: Any, target: Callable[[Any], float], name: str, title: str) -> Figure:
    """One objective per complete trial (Optuna's optimisation history) with the running best.

    Parameters
    ----------
    study : optuna.Study
    target : callable
        The objective's value of a complete trial (minimised).
    name : str
        The objective's name.
    title : str
    """
    with _optuna_plot() as optuna_matplotlib:
        ax = optuna_matplotlib.plot_optimization_history(study, target=target, target_name=name)
        trials = _complete(study)
        if trials:
            best = np.minimum.accumulate([target(t) for t in trials])
            ax.plot([t.number for t in trials], best, "-", color="tab:red", label="best so far")
        ax.legend(fontsize=9)
        ax.set_xlabel("trial")
        ax.set_title(title, fontsize=11)
        ax.figure.tight_layout()
    return ax.figure


def tune_pareto(study: Any, names: Sequence[str], chosen: Sequence[float] | None) -> Figure:
    """Both objectives of every complete trial (Optuna's Pareto-front plot), the front
    (``study.best_trials``) joined, and the chosen trial starred.

    Parameters
    ----------
    study : optuna.Study
        A study of two minimised objectives.
    names : (str, str)
        The objectives' names.
    chosen : (float, float), optional
        The objective values of the chosen trial.
    """
    with _optuna_plot() as optuna_matplotlib:
        ax = optuna_matplotlib.plot_pareto_front(study, target_names=list(names))
        front = sorted((tuple(t.values) for t in study.best_trials), key=lambda v: v[0])
        if front:
            ax.plot(*zip(*front, strict=True), "-", color="tab:red", alpha=0.6, zorder=1)
        if chosen is not None:
            ax.scatter(*chosen, s=200, marker="*", color="gold", edgecolors="k", zorder=5, label="chosen")
        handles, labels = ax.get_legend_handles_labels()
        renamed = {"Trial": "trial", "Best Trial": "Pareto front"}
        ax.legend(handles, [renamed.get(label, label) for label in labels], fontsize=9)
        ax.set_title("Trials and the Pareto front", fontsize=11)
        ax.figure.tight_layout()
    return ax.figure


# Hand-written, not optuna.visualization.matplotlib.plot_param_importances: with several
# objectives, Optuna 5.0.0 sorts each objective's bars by its own ranking but labels them all
# with the last objective's order, so bars get other parameters' names (on the demo study it
# shows QE importance 0.46 for som.sigma_end; metrics.json has 0.38, and 0.46 for som.sigma).
# Drawing the importances the stage already computed also saves the second fANOVA fit (1.2 s on
# the demo's 12 trials, `make demo` tune stage, 2026-11-24).
def tune_importances(importances: dict[str, dict[str, float]]) -> Figure:
    """Horizontal bars: fANOVA importance of each parameter for each objective."""
    objectives = list(importances)
    params = sorted({p for imp in importances.values() for p in imp})
    fig, ax = plt.subplots(figsize=(7, 0.5 * max(len(params), 1) * max(len(objectives), 1) + 1.5))
    height = 0.8 / max(len(objectives), 1)
    for j, obj in enumerate(objectives):
        vals = [importances[obj].get(p, 0.0) for p in params]
        ax.barh(np.arange(len(params)) + j * height, vals, height=height, label=obj)
    ax.set_yticks(np.arange(len(params)) + height * (len(objectives) - 1) / 2, labels=params)
    ax.set_xlabel("importance (fANOVA, sums to 1 per objective)")
    ax.legend(fontsize=8)
    ax.set_title("Parameter importances", fontsize=10)
    fig.tight_layout()
    return fig
