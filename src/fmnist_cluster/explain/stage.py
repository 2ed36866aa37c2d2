"""The explainer inside the ``cluster`` stage: gather evidence, search, write the artefacts.

Writes into the stage's folder:

* ``explanation.json`` -- verdict, agreement, chance, the best hypothesis, the ranked
  candidates, one entry per label (rule, classes, precision and recall on the test split, the
  clusters holding it) and what each family did;
* ``explanation.npz`` -- for the clustered rows: ``index``, ``y``, ``rule_label`` (the label
  the best hypothesis gives, -1 when unexplained) and ``class_id`` (-1 unknown);
* ``figures/explain-label-<k>.png`` and ``figures/explain-property-<name>.png``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fmnist_cluster import plots
from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun, figure_name
from fmnist_cluster.config import ClusterConfig
from fmnist_cluster.decode import cluster_view
from fmnist_cluster.errors import FmnistError, FmnistWarning
from fmnist_cluster.explain import figures
from fmnist_cluster.explain.evidence import gather
from fmnist_cluster.explain.search import (
    explain,
    hypothesis_name,
    label_verdict,
    noisy_training_note,
    shift_note,
    too_few_note,
    weak_labels,
)

EXPLANATION_FILE = "explanation.json"
_LABEL_NOTES = {
    "partly explained": " - partly explained",
    "unexplained": " - unexplained",
    "untested": " - untested: no test row carries it",
}
"""What a label's console line ends with, by its verdict (an explained label: nothing)."""


class ExplainWarning(FmnistWarning):
    """The explainer could not run on this input (the clustering still stands)."""


EXPLANATION_ARRAYS = "explanation.npz"


def _rows(split: str, train: np.ndarray | None, test: np.ndarray | None) -> np.ndarray | None:
    if train is None or test is None:
        return None
    return {"train": train, "test": test, "all": np.concatenate([train, test])}[split]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The console summary: the verdict, then one line per label."""
    guess = result.get("best_guess")
    what = f"{hypothesis_name(guess)}; " if guess else ""
    head = "best guess " if result["verdict"] == "unexplained" and guess else ""
    lines = [
        f"explanation: {result['verdict']} ({head}{what}test agreement {_percent(result['agreement'])} "
        f"vs chance {_percent(result['chance'])})"
    ]
    for note in (weak_labels(result), shift_note(result), noisy_training_note(result), too_few_note(result)):
        if note:
            lines[0] += f"; {note}"
    for entry in result["labels"]:
        if entry["rule"] is None:
            lines.append(f"label {entry['label']}: unexplained ({entry['n_test']} test images)")
        else:
            weak = _LABEL_NOTES.get(label_verdict(entry) or "", "")
            lines.append(
                f"label {entry['label']}: {entry['rule']} (precision {_percent(entry['precision'])}, "
                f"recall {_percent(entry['recall'])}, {entry['n_test']} test images){weak}"
            )
    return lines


def run_explainer(
    run: StageRun,
    folder: Path,
    config: ClusterConfig,
    clusters: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
    originals_dir: Path | str | None = None,
    reference_dir: Path | str | None = None,
    progress: Progress = NULL_PROGRESS,
) -> tuple[str | None, list[str]]:
    """Explain the mystery labels of the images in ``folder`` and stage the results in ``run``.

    Parameters
    ----------
    run : StageRun
        The ``cluster`` stage's run.
    folder : Path
        The ``preprocess`` folder of the mystery-labelled images.
    config : ClusterConfig
        Its ``explain`` and ``decode`` sections and ``split`` / ``seed`` are used.
    clusters : dict of str to ndarray
        Cluster labels of the clustered rows per algorithm (cluster evidence per label).
    labels : ndarray or None
        The mystery labels of the clustered rows, checked against those of ``folder``.
    originals_dir, reference_dir : path or None
        Class evidence (see :func:`fmnist_cluster.explain.evidence.gather`).

    Raises
    ------
    FmnistError
        ``folder`` holds other labels than the clustered rows, or unreadable evidence.

    Returns
    -------
    (str or None, list of str)
        The verdict (None when the explainer could not run) and the summary lines (see
        :func:`summary_lines`).
    """
    evidence, extra = gather(folder, originals_dir, reference_dir, config.decode, progress)
    y_rows = _rows(config.split, evidence.y_train, evidence.y_test)
    if y_rows is None or (labels is not None and not np.array_equal(y_rows, labels)):
        raise FmnistError(
            f"the labels in {folder} differ from those of the clustered rows; "
            "pass the preprocess folder the input was made from to --images"
        )
    for path, digest in extra["inputs"].items():
        run.add_input(path, digest)
    try:
        result = explain(evidence, config.explain, config.seed, progress)
    except ValueError as exc:
        warnings.warn(
            f"the mystery labels of {folder} are not explained: {exc}; set explain.enabled=false to skip the explainer",
            ExplainWarning,
            stacklevel=2,
        )
        return None, []
    predicted = result.pop("_predict")
    if "match_rate" in extra:
        result["content_match_rate"] = extra["match_rate"]
    view = cluster_view(y_rows, np.unique(y_rows), clusters) if clusters else {}
    for entry in result["labels"]:
        entry["clusters"] = view.get(str(entry["label"]), {})
    rule_rows = _rows(config.split, *(predicted[s] for s in ("train", "test"))) if predicted else None
    if rule_rows is None or result["verdict"] == "unexplained":
        rule_rows = np.full(len(y_rows), -1, dtype=np.int64)
    class_rows = _rows(config.split, evidence.class_train, evidence.class_test)
    if class_rows is None:
        class_rows = np.full(len(y_rows), -1, dtype=np.int64)
    result["figures"] = {}
    dataset = extra["images"]
    images_test = dataset.x_test
    best = result["best"]
    rng = np.random.default_rng(config.seed)
    for entry in result["labels"]:
        label = entry["label"]
        members = np.flatnonzero(evidence.y_test == label)
        if not len(members):
            continue
        pick = np.sort(rng.choice(members, size=min(config.explain.montage_images, len(members)), replace=False))
        if evidence.class_test is not None:
            names = evidence.class_names
            captions = [names[c] if c >= 0 else "?" for c in evidence.class_test[pick]]
        elif best and best["properties"]:
            p = best["properties"][0]
            captions = [f"{v:.4g}" for v in evidence.values(p, "test")[pick]]
        else:
            captions = [""] * len(pick)
        rule = entry["rule"] or "unexplained"
        name = f"explain-label-{label}"
        run.save_bytes(
            figure_name(name),
            plots.figure_png(figures.label_montage(images_test[pick], captions, f"label {label}: {rule}")),
        )
        result["figures"][str(label)] = figure_name(name)
    if best and best["properties"]:
        thresholds = best["thresholds"]
        for p in best["properties"]:
            fig = figures.property_histograms(
                evidence.values(p, "test"),
                evidence.y_test,
                p,
                thresholds if len(best["properties"]) == 1 else [],
                f"{p} per mystery label (test split); dashed: the rule's thresholds",
                None if evidence.pixels_test is None else evidence.pixels_test.mean(axis=0),
            )
            name = f"explain-property-{p}"
            run.save_bytes(figure_name(name), plots.figure_png(fig))
            result["figures"][p] = figure_name(name)
    index = np.arange(len(y_rows), dtype=np.int64)
    run.save_npz(EXPLANATION_ARRAYS, index=index, y=y_rows, rule_label=rule_rows, class_id=class_rows)
    run.save_json(EXPLANATION_FILE, result)
    return result["verdict"], summary_lines(result)
