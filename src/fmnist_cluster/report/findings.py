"""The findings that open the report: what each mystery label means, how each model does
against the published study, how well each clustering agrees with the labels, and the SOM
against the tutorial's settings. Every row links to its evidence further down the page.

Sources: the explainer's ``explanation.json`` / ``explanation.npz`` in a ``cluster`` folder
(else the decoding of ``decoding.json``), ``train-cnn``, ``cluster`` and ``train-som`` metrics.
The published figures are the study's: 92.26 % for its reference CNN and 93.73 % for its own
design, both on its 5 mystery labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmnist_cluster.explain.search import (
    judged_label_fit,
    label_verdict,
    noisy_training_note,
    shift_note,
    too_few_note,
    weak_labels,
)
from fmnist_cluster.report.document import Cell, Section, Table, fmt, pct
from fmnist_cluster.report.evidence import decoding_composition, hypothesis_text, read_json, read_npz
from fmnist_cluster.report.rows import RowImages

# the study's two designs, as layer sequences (names aside), and their published test accuracy
REFERENCE_DESIGN = ("conv 32 3 relu", "pool max 2", "conv 32 3 relu", "flatten", "dense classes none")
OWN_DESIGN = (
    "conv 32 3 leaky_relu",
    "pool max 2",
    "conv 64 3 leaky_relu",
    "pool max 2",
    "conv 256 3 leaky_relu",
    "pool max 2",
    "flatten",
    "dense 64 leaky_relu",
    "dense classes none",
)
STUDY_SET_SHAPE = (5, 10_000)
"""The labels and test rows of the study's set: the published figures are compared only there."""
PUBLISHED_CNN = {
    REFERENCE_DESIGN: ("the study's reference design", 0.9226),
    OWN_DESIGN: ("the study's own design", 0.9373),
}
# the tutorial's MiniSom settings (configs/som-seed.yaml)
TUTORIAL_SOM = {
    "engine": "minisom",
    "rows": 50,
    "cols": 50,
    "sigma": 0.5,
    "learning_rate": 0.4,
    "init": "random",
    "order": "random",
    "steps": 1000,
}
STRIP_IMAGES = 10


@dataclass
class Block:
    """One part of the findings: a heading, lines of text and an optional table."""

    anchor: str
    heading: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None


def layer_key(layer: dict[str, Any]) -> str:
    """A layer of a ``train-cnn`` architecture as a short key, without its name."""
    kind = layer.get("type")
    bn = " bn" if layer.get("batchnorm") else ""
    if kind == "conv":
        return f"conv {layer.get('filters')} {layer.get('kernel')} {layer.get('activation')}{bn}"
    if kind == "dense":
        return f"dense {layer.get('units')} {layer.get('activation')}{bn}"
    if kind == "pool":
        return f"pool {layer.get('mode')} {layer.get('size')}"
    return str(kind)


def cnn_design(config: dict[str, Any]) -> tuple[str, float | None]:
    """The name of a ``train-cnn`` config's design and its published accuracy, if any."""
    arch = config.get("architecture") or []
    key = tuple(layer_key(layer) for layer in arch if isinstance(layer, dict) and layer.get("type") != "dropout")
    if key in PUBLISHED_CNN:
        return PUBLISHED_CNN[key]
    return f"ours ({len(arch)} layers)", None


def is_tutorial_som(config: dict[str, Any]) -> bool:
    """True when a ``train-som`` config has the tutorial's MiniSom settings."""
    som = config.get("som") or {}
    return all(som.get(k) == v for k, v in TUTORIAL_SOM.items()) and bool((config.get("train") or {}).get("pool"))


def _evidence(section: Section, text: str = "evidence") -> Cell:
    return Cell(text, href=f"#{section.anchor}")


def _strip(images: np.ndarray | None, rows: np.ndarray, seed: int) -> bytes | None:
    from fmnist_cluster import plots

    if images is None or len(rows) == 0:
        return None
    pick = np.sort(np.random.default_rng(seed).choice(rows, min(STRIP_IMAGES, len(rows)), replace=False))
    return plots.image_strip_png(images[pick])


def _unexplained(explanation: dict[str, Any]) -> str:
    """Why nothing counts as a meaning: no hypothesis, none above chance, or one above chance
    that explains too little."""
    guess = explanation.get("best_guess") if isinstance(explanation.get("best_guess"), dict) else None
    chance = pct(explanation.get("chance"))
    if guess is None:
        return f"No hypothesis could be fitted (chance {chance})."
    settings = explanation.get("settings") or {}
    z, lift = explanation.get("z"), explanation.get("lift")
    text = f"The best guess ({hypothesis_text(guess)}) gives the mystery label of {pct(explanation.get('agreement'))}"
    min_z, partial = settings.get("min_z"), settings.get("partial_lift")
    numbers = all(isinstance(v, int | float) for v in (z, lift, min_z, partial))
    if too_few := too_few_note(explanation):
        return f"{text} of the test rows; {too_few}."
    if explanation.get("chance") == 1:
        return f"{text} of the test rows: they all carry one label, so there is nothing to tell apart."
    if numbers and z >= min_z and lift < partial:
        return (
            f"{text} of the test rows, above chance ({chance}), but closes only {pct(lift, 1)} of the gap from "
            f"chance to a perfect rule (partly explained needs {pct(partial, 0)})."
        )
    if numbers and z <= -min_z:
        return f"{text} of the test rows, far below chance ({chance}): always giving the commonest label does better."
    return f"{text} of the test rows, not significantly above chance ({chance})."


def _label_rows_explained(
    sec: Section, explanation: dict[str, Any], inputs: dict[str, str], images: RowImages, seed: int
) -> Block:
    verdict = str(explanation.get("verdict", "unknown"))
    best = explanation.get("best") if isinstance(explanation.get("best"), dict) else None
    block = Block("findings-labels", "What the mystery labels mean")
    if best is None:
        reason = _unexplained(explanation)
        block.lines.append(f"Verdict: {verdict}. {reason} The candidates are listed in the evidence.")
    else:
        block.lines.append(
            f"Verdict: {verdict}. The best hypothesis ({hypothesis_text(best)}) gives the mystery label of "
            f"{pct(explanation.get('agreement', best.get('agreement')))} of the test rows (chance "
            f"{pct(explanation.get('chance'))}: always giving the commonest label)."
        )
        weak = weak_labels(explanation)
        if weak:
            block.lines.append(f"Not every label is accounted for: {weak}.")
    if shift := shift_note(explanation) or noisy_training_note(explanation):
        block.lines.append(f"Training and test disagree: {shift}.")
    y, pics = None, None
    if "explanation.npz" in sec.manifest.get("outputs", {}):
        arrays = read_npz(sec.folder, "explanation.npz", "cluster", inputs, ("y",))
        y = np.asarray(arrays["y"])
        pics = images(sec)
        if pics is not None and len(pics) != len(y):
            pics = None
    rows: list[list[str | Cell]] = []
    for entry in explanation.get("labels") or []:
        if not isinstance(entry, dict):
            continue
        label = entry.get("label")
        png = _strip(pics, np.flatnonzero(y == label), seed) if y is not None else None
        rows.append(
            [
                str(label),
                str(entry.get("rule") or "–"),
                " + ".join(str(c) for c in entry.get("classes") or []) or "–",
                pct(entry.get("precision"), 1),
                pct(entry.get("recall"), 1),
                str(label_verdict(entry) or "–"),
                fmt(entry.get("n_test")),
                Cell("", png=png) if png else "–",
                _evidence(sec),
            ]
        )
    block.table = Table(
        "One row per mystery label",
        ["label", "rule", "classes", "precision", "recall", "verdict", "test rows", "images", ""],
        rows,
        "precision: share of the rows the rule gives this label that carry it; recall: share of the label's "
        "rows the rule finds; both on the test split. A label's rule is only partly explained when either is "
        f"under {pct(judged_label_fit(explanation), 0)}, and unexplained when the rule never gives the label or "
        "finds none of its rows.",
    )
    return block


def _label_rows_decoded(
    sec: Section, decoding: dict[str, Any], inputs: dict[str, str], images: RowImages, seed: int
) -> Block:
    block = Block("findings-labels", "What the mystery labels mean")
    block.lines.append(
        f"No explainer output (explanation.json) in {sec.folder}: the labels are described by their decoded "
        f"classes ({decoding.get('method')}), not by a tested rule."
    )
    labels = read_npz(sec.folder, "labels.npz", "cluster", inputs) if "labels.npz" in sec.manifest["outputs"] else {}
    y = labels.get("y")
    pics = images(sec)
    rows: list[list[str | Cell]] = []
    for entry in decoding.get("labels") or []:
        label = entry.get("label")
        png = _strip(pics, np.flatnonzero(y == label), seed) if y is not None and pics is not None else None
        held = sum(c.get("share", 0) for c in entry.get("classes", []) if c.get("name") in entry.get("members", []))
        rows.append(
            [
                str(label),
                decoding_composition(entry),
                " + ".join(str(m) for m in entry.get("members", [])) or "–",
                pct(held, 1),
                fmt(entry.get("n")),
                Cell("", png=png) if png else "–",
                _evidence(sec),
            ]
        )
    block.table = Table(
        "One row per mystery label",
        ["label", "composition", "classes", "held by these classes", "rows", "images", ""],
        rows,
    )
    return block


MYSTERY_STAGES = ("train-cnn", "encode", "cluster")
"""Stages of the mystery-label path: a report over none of them (a SOM study) says nothing
about mystery labels."""


def label_block(sections: list[Section], inputs: dict[str, str], images: RowImages, seed: int) -> Block | None:
    """What each mystery label means: the explainer's verdict, else the decoding, else a note;
    None when no input is of the mystery-label path."""
    if not any(s.stage in MYSTERY_STAGES for s in sections):
        return None
    clusters = [s for s in sections if s.stage == "cluster"]
    for sec in clusters:
        if "explanation.json" in sec.manifest.get("outputs", {}):
            explanation = read_json(sec.folder, "explanation.json", "cluster", inputs)
            if isinstance(explanation, dict):
                return _label_rows_explained(sec, explanation, inputs, images, seed)
    for sec in clusters:
        if "decoding.json" in sec.manifest.get("outputs", {}):
            decoding = read_json(sec.folder, "decoding.json", "cluster", inputs)
            if isinstance(decoding, dict):
                return _label_rows_decoded(sec, decoding, inputs, images, seed)
    block = Block("findings-labels", "What the mystery labels mean")
    block.lines.append(
        "Not explained here: no cluster folder among the inputs has an explanation (explanation.json) or a "
        "decoding (decoding.json). Run `fmnist-cluster cluster --originals DATA_DIR` on a mystery-labelled "
        "encoding and pass its folder to report."
        if clusters
        else "Not explained here: no cluster folder among the inputs."
    )
    return block


def model_block(sections: list[Section]) -> Block | None:
    """Test accuracy of every CNN beside the study's published figure for the same design."""
    cnns = [s for s in sections if s.stage == "train-cnn"]
    if not cnns:
        return None
    rows: list[list[str | Cell]] = []
    for sec in cnns:
        design, published = cnn_design(sec.manifest.get("config") or {})
        m = sec.metrics
        mystery = m.get("class_names") is None
        task = f"{m.get('n_classes')} mystery labels" if mystery else f"{m.get('n_classes')} classes"
        acc = m.get("test_accuracy")
        compare = published if mystery and (m.get("n_classes"), m.get("n_test")) == STUDY_SET_SHAPE else None
        diff = f"{100 * (acc - compare):+.2f} points" if isinstance(acc, (int, float)) and compare is not None else "–"
        rows.append([sec.folder.name, design, task, pct(acc), pct(compare), diff, fmt(m.get("n_test")), _evidence(sec)])
    block = Block("findings-models", "Models against the published study")
    block.lines.append(
        "The study reports 92.26 % for its reference design and 93.73 % for its own, on its 5 mystery labels of "
        "10,000 test images. Only a set of that shape is compared, not one of 10 classes or of another size (such "
        "as the shipped sample), and the difference means something only when the labels are the study's, or "
        "as hard to tell apart."
    )
    block.table = Table(
        "Test accuracy",
        ["model", "design", "task", "test accuracy", "published", "difference", "test rows", ""],
        rows,
    )
    return block


def cluster_block(sections: list[Section]) -> Block | None:
    """ARI, NMI and noise of every clustering against the labels of its rows (the mystery labels
    of a mystery-label input)."""
    clusters = [s for s in sections if s.stage == "cluster" and s.metrics.get("algorithms")]
    if not clusters:
        return None
    scored: list[tuple[float, list[str | Cell]]] = []
    for sec in clusters:
        what = f"{fmt(sec.metrics.get('n'))} {sec.metrics.get('split')}, {sec.metrics.get('kind')}"
        for algo, m in sec.metrics["algorithms"].items():
            ari = m.get("ari")
            row: list[str | Cell] = [
                sec.folder.name,
                what,
                str(algo),
                fmt(m.get("n_clusters")),
                fmt(ari),
                fmt(m.get("nmi")),
                pct(m.get("noise_share"), 1),
                _evidence(sec),
            ]
            scored.append((float(ari) if isinstance(ari, (int, float)) and np.isfinite(ari) else -np.inf, row))
    rows = [row for _, row in sorted(scored, key=lambda item: -item[0])]  # stable: ties keep their order
    block = Block("findings-clusters", "Cluster agreement with the labels")
    block.lines.append(
        "Each run against the labels of its rows (the mystery labels of a mystery-label input, else the "
        "classes), best ARI first; ARI 1 = the clusters are the labels, 0 = chance. Noise (label -1) counts "
        "as one cluster."
    )
    columns = ["run", "rows", "algorithm", "clusters", "ARI", "NMI", "noise", ""]
    block.table = Table("Agreement per algorithm", columns, rows)
    return block


def som_block(sections: list[Section]) -> Block | None:
    """Every map's QE, TE and accuracy, the tutorial's settings marked."""
    soms = [s for s in sections if s.stage == "train-som"]
    if not soms:
        return None
    rows: list[list[str | Cell]] = []
    tutorial = False
    for sec in soms:
        config = sec.manifest.get("config") or {}
        som = config.get("som") or {}
        m = sec.metrics
        held = bool(m.get("test_is_held_out"))
        where = "test" if held else "test, in-sample"
        is_tut = is_tutorial_som(config)
        tutorial |= is_tut
        settings = (
            f"{som.get('engine')} {som.get('rows')}×{som.get('cols')}, sigma {fmt(som.get('sigma'))}"
            f"{' → ' + fmt(som.get('sigma_end')) if som.get('engine') == 'batch' else ''}, init {som.get('init')}"
        )
        rows.append(
            [
                sec.folder.name + (" (tutorial's settings)" if is_tut else ""),
                settings,
                f"{fmt(m.get('test_qe', m.get('qe')))} ({where})",
                f"{fmt(m.get('test_te', m.get('te')))} ({where})",
                f"{pct(m.get('test_accuracy'))} ({where})",
                _evidence(sec),
            ]
        )
    block = Block("findings-som", "Self-organising maps against the tutorial's settings")
    block.lines.append(
        "QE: mean distance of a row to its best neuron; TE: share of rows whose two best neurons are not "
        "neighbours; accuracy: each neuron predicts the majority class of the training rows it wins."
        + (
            ""
            if tutorial
            else " No map with the tutorial's settings among the inputs (configs/som-seed.yaml makes one)."
        )
    )
    block.table = Table("Maps", ["map", "settings", "QE", "TE", "accuracy", ""], rows)
    return block


def build_findings(sections: list[Section], inputs: dict[str, str], images: RowImages, seed: int) -> list[Block]:
    """Every findings block that the inputs support, the mystery labels first."""
    blocks: list[Block | None] = [label_block(sections, inputs, images, seed)]
    blocks += [model_block(sections), cluster_block(sections), som_block(sections)]
    return [b for b in blocks if b is not None]
