"""What ``tune`` writes: the trials table, the chosen trial's ``best.yaml``, metrics and figures."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster.artefacts import StageRun
from fmnist_cluster.config import SomConfig, TuneConfig, config_to_yaml, get_dotted
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.study import shown_url

OBJECTIVES = ("qe", "te")
NAMES = ("held-out QE", "held-out TE")


def trial_qe_te(trial: Any, config: TuneConfig) -> tuple[float, float]:
    if config.objective == "pareto":
        return float(trial.values[0]), float(trial.values[1])
    return float(trial.user_attrs["qe"]), float(trial.user_attrs["te"])


def qe_te_study(study: Any, config: TuneConfig, complete: list[Any]) -> Any:
    """The study whose two objectives are held-out QE and TE, so that ``best_trials`` is their
    Pareto front: the study itself for objective ``pareto``; for ``scalar``, an in-memory copy
    of its ``complete`` trials, in the same order, with their QE and TE as values."""
    import optuna

    if config.objective == "pareto":
        return study
    copy = optuna.create_study(directions=["minimize", "minimize"], study_name=config.study_name)
    copy.add_trials(
        [
            optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, values=list(trial_qe_te(t, config))
            )
            for t in complete
        ]
    )
    return copy


def _applied(config: SomConfig, params: dict[str, Any]) -> dict[str, Any]:
    """The values ``params`` took in the trial's config (as ``best.yaml`` holds them): a sampled
    ``som.sigma_end`` above ``som.sigma`` was lowered to it."""
    return {key: get_dotted(config, key) for key in params}


def write_results(
    config: TuneConfig,
    study: Any,
    url: str,
    input_dir: Path | str,
    digest: str,
    out_dir: Path,
    plots: Any,
    started: float,
    finished_before: int = 0,
) -> dict[str, Any]:
    """Write the study's results (best settings, trials, figures); ``finished_before`` trials
    were finished when this run started, so the run's record says how many the study finished
    while it ran (by its workers, or by others on the same study)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if not complete:
        raise FmnistError(f"study '{config.study_name}' in {url} has no finished trial; raise n_trials or timeout")
    qe_te = np.array([trial_qe_te(t, config) for t in complete])
    score = qe_te[:, 0] + config.te_weight * qe_te[:, 1]
    objectives = qe_te_study(study, config, complete)
    on_front = {t.number for t in objectives.best_trials}  # numbers in objectives: the copy's are 0, 1, ...
    front = np.array([(t.number if objectives is study else i) in on_front for i, t in enumerate(complete)])
    candidates = np.nonzero(front)[0] if config.objective == "pareto" else np.arange(len(complete))
    best = int(candidates[np.argmin(score[candidates])])
    best_trial = complete[best]
    best_cfg = SomConfig.model_validate(best_trial.user_attrs["config"])
    keys = list(config.space)
    lines = ["trial,state,qe,te,score," + ",".join(keys)]
    for t in trials:
        if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            continue
        qe, te = trial_qe_te(t, config) if t.state == optuna.trial.TrialState.COMPLETE else (float("nan"), float("nan"))
        vals = ",".join(str(t.params.get(k, "")) for k in keys)
        lines.append(f"{t.number},{t.state.name.lower()},{qe:.6g},{te:.6g},{qe + config.te_weight * te:.6g},{vals}")
    summary = {
        "objective": config.objective,
        "study_name": config.study_name,
        "n_complete": len(complete),
        "n_pruned": len(pruned),
        "n_failed": len(failed),
        "n_trials_total": len(trials),
        "best_trial": best_trial.number,
        "best_qe": float(qe_te[best, 0]),
        "best_te": float(qe_te[best, 1]),
        "best_score": float(score[best]),
        "best_params": _applied(best_cfg, best_trial.params),
        "pareto_trials": [complete[i].number for i in np.nonzero(front)[0]],
    }
    importances: dict[str, dict[str, float]] = {}
    if len(complete) >= 3:
        for j, name in enumerate(OBJECTIVES):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    importances[name] = optuna.importance.get_param_importances(
                        study,
                        evaluator=optuna.importance.FanovaImportanceEvaluator(seed=config.seed),
                        target=lambda t, j=j: trial_qe_te(t, config)[j],
                    )
            except (RuntimeError, ValueError, ZeroDivisionError):
                continue
    summary["importances"] = importances
    seconds = time.perf_counter() - started
    recorded = config.model_dump(mode="json")
    if recorded.get("storage"):
        recorded["storage"] = shown_url(recorded["storage"])  # never a password in an artefact
    with StageRun("tune", out_dir, recorded, seed=config.seed, started=started) as run:
        run.add_input(Path(input_dir) / "data.npz", digest)
        run.extra["storage"] = url  # where the study lives, with the run's record, not in the outputs
        finished_now = len(complete) + len(pruned) - finished_before
        run.measured(seconds_this_run=seconds, trials_this_run=finished_now)
        run.save_text("best.yaml", config_to_yaml(best_cfg))
        run.save_text("trials.csv", "\n".join(lines) + "\n")
        run.save_json("metrics.json", summary)
        for j, (name, shown) in enumerate(zip(OBJECTIVES, NAMES, strict=True)):
            fig = plots.tune_history(
                study, lambda t, j=j: trial_qe_te(t, config)[j], shown, f"Optimisation history: {shown}"
            )
            run.save_bytes(f"history-{name}.png", plots.figure_png(fig))
        run.save_bytes("pareto.png", plots.figure_png(plots.tune_pareto(objectives, NAMES, qe_te[best])))
        if importances:
            run.save_bytes("importances.png", plots.figure_png(plots.tune_importances(importances)))
        run.commit()
    return {**summary, "storage": url, "seconds_this_run": round(seconds, 3)}
