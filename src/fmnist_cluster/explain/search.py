"""Search for the rule behind mystery labels: fit every hypothesis, choose, score, judge.

The training split is cut (seeded) into a *fit* part and a *validation* part. Every hypothesis
of every family is fitted on the fit part; its complexity (ranges, leaves, thresholds) and the
winner are chosen on the validation part. The chosen hypotheses are then refitted on the whole
training split and scored once on the test split: *agreement* is the share of test rows whose
label the hypothesis gives, *chance* the share of the most common test label.

The winner is the simplest hypothesis (fewest properties its rule names, then no class
evidence, then fewest rules, then fewest thresholds) whose validation agreement is within
``simplicity_tolerance`` of the best, or not significantly below it: less than
``simplicity_z`` standard errors of the paired difference on the validation rows. (With some
thirty candidates scored on the same rows, the best score alone favours whichever over-fitted
hypothesis was luckiest.) Neither admits a hypothesis that recalls some label less than half
as often as the best, which recalls most of that label's validation rows: a rare label weighs
little in the agreement and its few rows make no significant difference. The verdict compares
its test agreement
with chance through the lift ``(agreement - chance) / (1 - chance)`` and a one-sided binomial z
score: ``explained`` at a lift of at least ``explained_lift`` when the rule gives every label
(else ``partly explained``), ``partly explained`` at
``partial_lift`` with z of at least ``min_z``, else ``unexplained``. Each label is judged too:
its rule is ``partly explained`` when its precision or recall on the test split is under
``label_fit``, even when the whole verdict is ``explained``, and ``unexplained`` when the rule
never gives it or gives it to none of its test rows. A rule on classes a ``--reference``
network predicted is judged against ``reference_fit`` for both, since the network's own errors
cap its agreement. A winner whose test agreement falls far under its validation agreement is
flagged (``holds_on_test``): the test labels may follow another rule. That is not judged for
a rule on predicted classes, which the network gets right more often on its own training
images than on the test images.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress
from fmnist_cluster.config import ExplainConfig
from fmnist_cluster.explain.evidence import Evidence
from fmnist_cluster.explain.hypotheses import (
    PAIR_SEARCHES,
    ClassAndProperty,
    ClassGrouping,
    PropertyBins,
    PropertyPair,
)
from fmnist_cluster.explain.properties import pixel_name, screen_pixels

#: The hypothesis families, in the order they are tried.
FAMILIES = ("class-grouping", "property-bins", "class-and-property")
NO_CLASSES = "skipped: no class evidence (give --originals or --reference)"
#: The verdicts, from best to worst.
VERDICTS = ("explained", "partly explained", "unexplained")
#: The least drop from validation to test agreement that counts as the rule not holding on test.
SHIFT_FLOOR = 0.02


@dataclass
class _Fitted:
    kind: str
    properties: list[str]
    uses_classes: bool
    model: Any
    columns: Callable[[str], np.ndarray]
    validation: float
    training: float
    described: dict[str, Any]
    val_hits: np.ndarray = field(compare=False, repr=False)
    val_y: np.ndarray = field(compare=False, repr=False)

    def key(self) -> tuple[int, int, int, int, float]:
        """Simplicity order: fewest properties named (a pair's tree may split on one), no
        classes, fewest rules, fewest thresholds (a tree's splits); then the best agreement over
        the whole training split (fit and validation parts), which separates hypotheses that
        validation alone cannot."""
        thresholds = len(getattr(self.model, "thresholds_", ())) or getattr(self.model, "n_splits_", 0)
        return (
            len(self.described["properties"]),
            int(self.uses_classes),
            int(self.described["n_rules"]),
            thresholds,
            -self.training,
        )


def _columns(evidence: Evidence, fit_rows: np.ndarray, val_rows: np.ndarray, uses_classes: bool, props: Sequence[str]):
    def build(part: str) -> np.ndarray:
        if part in ("fit", "val", "train"):
            cls, split = evidence.class_train, "train"
            rows = {"fit": fit_rows, "val": val_rows, "train": slice(None)}[part]
        else:
            cls, split, rows = evidence.class_test, "test", slice(None)
        cols = ([cls] if uses_classes else []) + [evidence.values(p, split) for p in props]
        return np.column_stack([np.asarray(c, dtype=np.float64)[rows] for c in cols])

    return build


def _agreement(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y)) if len(y) else 0.0


#: Validation rows of a label the best hypothesis must get right before another may not drop it.
MIN_RECALLED = 3


def _loses_a_label(f: _Fitted, best: _Fitted) -> bool:
    """Whether ``best`` gives some label to most of its validation rows (``MIN_RECALLED`` at
    least) and ``f`` to less than half as many: a rare label weighs little in the agreement, so
    neither a tolerance on the agreement nor a test of its difference would keep a simpler rule
    from dropping it (a label ``best`` recalls only by luck does not count)."""
    for label in np.unique(f.val_y):
        rows = f.val_y == label
        kept = float(np.mean(best.val_hits[rows]))
        recalled = int(np.sum(best.val_hits[rows]))
        if kept >= 0.5 and recalled >= MIN_RECALLED and np.mean(f.val_hits[rows]) < 0.5 * kept:
            return True
    return False


def _pick(fitted: list[_Fitted], tolerance: float, z: float = 0.0, chance: float = 1.0) -> _Fitted:
    """The simplest of the fitted that loses no label of the best (:func:`_loses_a_label`) and
    whose validation agreement is within ``tolerance`` of the best's, or less than ``z``
    standard errors of the paired difference below it while itself ``z`` binomial standard
    errors above ``chance`` (on few validation rows a hypothesis no better than a constant
    guess is not significantly worse than a perfect one either)."""
    best = max(fitted, key=lambda f: f.validation)

    def close(f: _Fitted) -> bool:
        if _loses_a_label(f, best):  # not simpler but worse, however small the label
            return False
        gap = best.validation - f.validation
        if gap <= tolerance:
            return True
        n = max(len(f.val_hits), 1)
        diff = best.val_hits.astype(np.float64) - f.val_hits
        above_chance = f.validation - chance >= z * np.sqrt(max(chance * (1.0 - chance), 1e-12) / n)
        return bool(above_chance and gap < z * float(np.std(diff)) / np.sqrt(n))

    return min((f for f in fitted if close(f)), key=_Fitted.key)


def _fit_variants(
    evidence: Evidence,
    kind: str,
    props: list[str],
    uses_classes: bool,
    models: list[Any],
    y_fit: np.ndarray,
    y_val: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    settings: ExplainConfig,
) -> _Fitted | None:
    """Fit every complexity variant of one hypothesis on the fit rows; keep the one chosen on
    validation."""
    build = _columns(evidence, rows[0], rows[1], uses_classes, props)
    X_fit, X_val = build("fit"), build("val")
    fitted = []
    for model in models:
        try:
            model.fit(X_fit, y_fit)
        except ValueError:
            continue
        described = model.describe(evidence.class_names, props)
        hits = model.predict(X_val) == y_val
        validation = float(np.mean(hits)) if len(y_val) else 0.0
        n_fit, n_val = len(y_fit), len(y_val)
        training = (_agreement(model, X_fit, y_fit) * n_fit + validation * n_val) / (n_fit + n_val)
        fitted.append(_Fitted(kind, props, uses_classes, model, build, validation, training, described, hits, y_val))
    return _pick(fitted, settings.complexity_tolerance) if fitted else None


def _screen_pairs(
    evidence: Evidence,
    pairs: list[tuple[str, str]],
    keep: int,
    leaves: int,
    y_train: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray],
    seed: int,
    sample: int = 8000,
) -> list[tuple[str, str]]:
    """The ``keep`` pairs of properties whose quick trees (a greedy one of ``leaves`` leaves and
    a lookahead one of depth two on at most 63 cuts per property, on a seeded sample of the fit rows)
    agree best with the validation rows, in the declared order."""
    rng = np.random.default_rng(seed)
    fit_rows = rows[0] if len(rows[0]) <= sample else np.sort(rng.choice(rows[0], sample, replace=False))
    val_rows = rows[1]
    scored = []
    for p, q in pairs:
        X = np.column_stack([evidence.values(p, "train"), evidence.values(q, "train")])
        score = 0.0
        for search in PAIR_SEARCHES:
            model = PropertyPair(max_leaf_nodes=leaves, search=search, max_bins=64, random_state=seed)
            try:
                model.fit(X[fit_rows], y_train[fit_rows])
            except ValueError:  # a lookahead tree needs both properties to vary
                continue
            score = max(score, _agreement(model, X[val_rows], y_train[val_rows]))
        scored.append((score, -pairs.index((p, q)), (p, q)))
    scored.sort(reverse=True)
    return sorted((pair for _, _, pair in scored[:keep]), key=pairs.index)


def _verdict(
    agreement: float, chance: float, n: int, settings: ExplainConfig, explained_lift: float
) -> tuple[str, float, float]:
    lift = (agreement - chance) / (1.0 - chance) if chance < 1 else 0.0
    z = (agreement - chance) / np.sqrt(max(chance * (1.0 - chance), 1e-12) / max(n, 1))
    if lift >= explained_lift and z >= settings.min_z:
        return "explained", float(lift), float(z)
    if lift >= settings.partial_lift and z >= settings.min_z:
        return "partly explained", float(lift), float(z)
    return "unexplained", float(lift), float(z)


def _holds_on_test(validation: float, n_val: int, agreement: float, n_test: int, min_z: float) -> bool:
    """False when the test agreement falls more than ``min_z`` standard errors of the difference
    (and at least ``SHIFT_FLOOR``) under the validation agreement: the rule chosen on training
    rows does not carry over to the test rows, whose labels may follow another rule."""
    se = np.sqrt(validation * (1 - validation) / max(n_val, 1) + agreement * (1 - agreement) / max(n_test, 1))
    drop = validation - agreement
    return not (drop >= SHIFT_FLOOR and drop > min_z * se)


def shift_note(result: dict[str, Any]) -> str:
    """A warning when an :func:`explain` result's rule fits the validation rows far better than
    the test rows (``''`` otherwise, and for results written before this was recorded)."""
    guess = result.get("best_guess")
    if result.get("holds_on_test") is not False or not isinstance(guess, dict):
        return ""
    return (
        f"the rule fits the validation rows ({guess['validation_agreement'] * 100:.1f} %) far better than the test "
        f"rows ({guess['agreement'] * 100:.1f} %): the test labels may follow another rule than the training labels"
    )


def noisy_training_note(result: dict[str, Any]) -> str:
    """A warning when an :func:`explain` result's rule fits the test rows far better than the
    validation rows, which are training rows: the training labels may hold noise or
    contradictions (``''`` otherwise). The test of :func:`_holds_on_test` with the two splits
    swapped."""
    guess, settings = result.get("best_guess"), result.get("settings") or {}
    n_val, n_test, min_z = result.get("n_validation"), result.get("n_test"), settings.get("min_z")
    if not isinstance(guess, dict) or not all(isinstance(v, int | float) for v in (n_val, n_test, min_z)):
        return ""
    validation, agreement = guess.get("validation_agreement"), guess.get("agreement")
    if not all(isinstance(v, int | float) for v in (validation, agreement)):
        return ""
    if _holds_on_test(agreement, n_test, validation, n_val, min_z):
        return ""
    return (
        f"the rule fits the test rows ({agreement * 100:.1f} %) far better than the validation rows "
        f"({validation * 100:.1f} %), which come from the training split: the training labels may hold noise or "
        "contradictions"
    )


def too_few_note(result: dict[str, Any]) -> str:
    """Why an :func:`explain` result whose best guess fits as well as an explained rule is still
    ``unexplained``: the labels other than the commonest hold too few test rows for the fit to
    be significant (``''`` otherwise)."""
    settings = result.get("settings") or {}
    lift, z, min_z = result.get("lift"), result.get("z"), settings.get("min_z")
    needed, chance, n = result.get("explained_lift"), result.get("chance"), result.get("n_test")
    numbers = (lift, z, min_z, needed, chance, n)
    if result.get("verdict") != "unexplained" or not all(isinstance(v, int | float) for v in numbers):
        return ""
    if lift < needed or z >= min_z:
        return ""
    rarer = round((1 - chance) * n)
    return (
        f"the best guess fits as well as an explained rule, but only {rarer} of the {n} test rows carry a label "
        f"other than the commonest: too few to tell the fit from chance (z {z:.2f}, needs {min_z:g})"
    )


def _per_label(
    predicted: np.ndarray, y: np.ndarray, labels: np.ndarray, described: dict | None, label_fit: float
) -> list[dict]:
    """One entry per label: its rule and classes, and (only when there is a rule) the rule's
    precision and recall on the test split and its own verdict."""
    out = []
    for label in labels:
        truth = y == label
        entry: dict[str, Any] = {
            "label": int(label),
            "rule": None,
            "classes": None,
            "n_test": int(truth.sum()),
            "precision": None,
            "recall": None,
            "verdict": None,
        }
        if described:
            said = predicted == label
            hit = int(np.sum(truth & said))
            precision = round(hit / int(said.sum()), 4) if said.any() else None
            recall = round(hit / int(truth.sum()), 4) if truth.any() else None
            rule = described["rules"].get(str(label))
            if rule is None or (hit == 0 and truth.any()):
                verdict: str | None = "unexplained"  # never given, or given to none of its rows
            elif precision is None and recall is None:
                verdict = None  # no test row carries it and the rule never gives it: untested
            elif all(v is None or v >= label_fit for v in (precision, recall)):
                verdict = "explained"
            else:
                verdict = "partly explained"
            entry.update(
                {
                    "rule": rule,
                    "classes": (described.get("classes") or {}).get(str(label)),
                    "precision": precision,
                    "recall": recall,
                    "verdict": verdict,
                }
            )
        out.append(entry)
    return out


def judged_label_fit(result: dict[str, Any]) -> float | None:
    """The ``label_fit`` an :func:`explain` result judged its labels by (``reference_fit`` for
    a rule on classes a network predicted); results written before it was recorded give the
    configured one."""
    return result.get("label_fit", (result.get("settings") or {}).get("label_fit"))


def hypothesis_name(hypothesis: dict[str, Any]) -> str:
    """A hypothesis of an :func:`explain` result in a few words: its family and the properties
    it names (``'property-bins on width'``); a rule that names none and no classes gives one
    label to every image."""
    kind, props = str(hypothesis.get("kind", "?")), [str(p) for p in hypothesis.get("properties") or []]
    if props:
        return f"{kind} on {' and '.join(props)}"
    return kind if kind.startswith("class") else "one label for every image"


def label_verdict(entry: dict[str, Any]) -> str | None:
    """The verdict of one label of an :func:`explain` result as shown: ``'untested'`` for a
    label with a rule that no test row carries and the rule gives to none (recorded as null),
    else the recorded one (null for the labels of a result without a rule)."""
    if entry.get("verdict") is None and entry.get("rule"):
        return "untested"
    return entry.get("verdict")


def weak_labels(result: dict[str, Any]) -> str:
    """What an :func:`explain` result with a rule leaves open, label by label: ``'labels 2, 5
    only partly explained (...); label 1 unexplained (...); label 7 untested (...)'``; for a
    ``partly explained`` rule whose labels all fit, how far the whole rule falls short; ``''``
    when nothing is open (or there is no rule at all)."""

    def having(verdict: str) -> str:
        labels = [str(e["label"]) for e in result.get("labels") or [] if e.get("verdict") == verdict]
        return f"label{'s' if len(labels) > 1 else ''} {', '.join(labels)}" if labels else ""

    if result.get("best") is None:
        return ""
    fit = judged_label_fit(result)
    under = f"under {fit * 100:g} %" if isinstance(fit, int | float) else "too low"
    parts = []
    if partly := having("partly explained"):
        parts.append(f"{partly} only partly explained (precision or recall {under} on the test split)")
    unexplained = [e for e in result.get("labels") or [] if e.get("verdict") == "unexplained"]
    for never in (True, False):
        group = [str(e["label"]) for e in unexplained if (e.get("rule") is None) is never]
        if group:
            many = len(group) > 1
            if never:
                why = f"the rule never gives {'them' if many else 'it'}"
            else:
                why = f"the rule gives {'them to none of their' if many else 'it to none of its'} test rows"
            parts.append(f"label{'s' if many else ''} {', '.join(group)} unexplained ({why})")
    untested = [str(e["label"]) for e in result.get("labels") or [] if label_verdict(e) == "untested"]
    if untested:
        many = len(untested) > 1
        parts.append(
            f"label{'s' if many else ''} {', '.join(untested)} untested (no test row carries "
            f"{'them' if many else 'it'} and the rule gives {'them' if many else 'it'} to none: the verdict "
            "holds for the other labels only)"
        )
    lift, needed = result.get("lift"), result.get("explained_lift")
    if not parts and result.get("verdict") == "partly explained" and isinstance(lift, int | float):
        need = f"; explained needs {needed * 100:g} %" if isinstance(needed, int | float) else ""
        parts.append(f"every label's rule fits, but the rule closes {lift * 100:.1f} % of the gap from chance{need}")
    return "; ".join(parts)


def _checked_pixels(name: str, pixels: Any, n: int) -> np.ndarray | None:
    """``pixels`` as an (n, 784) array, or ValueError unless they are n images of 28 x 28 whole
    numbers in 0..255 (the original 8-bit scale, not the [0, 1] of ``data.npz``)."""
    if pixels is None:
        return None
    x = np.asarray(pixels)
    if x.ndim < 2 or len(x) != n or int(np.prod(x.shape[1:])) != 784:
        raise ValueError(f"{name} must hold {n} images of 28 x 28 pixels, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"{name} must be numbers, got dtype {x.dtype}")
    x = x.reshape(n, 784)
    if np.issubdtype(x.dtype, np.floating) and not (np.isfinite(x).all() and np.array_equal(x, np.rint(x))):
        raise ValueError(f"{name} must be whole numbers on the 0..255 scale (not NaN, not scaled to [0, 1])")
    if len(x) and (x.min() < 0 or x.max() > 255):
        raise ValueError(f"{name} must be in 0..255, got {x.min()}..{x.max()}")
    return x


def explain(
    evidence: Evidence, settings: ExplainConfig | None = None, seed: int = 0, progress: Progress = NULL_PROGRESS
) -> dict[str, Any]:
    """Find, score and judge the rule behind the mystery labels.

    Parameters
    ----------
    evidence : Evidence
    settings : ExplainConfig, optional
        Tolerances and verdict thresholds (defaults when omitted).
    seed : int
        Seed of the fit / validation cut and of the trees.
    progress : Progress

    Returns
    -------
    dict
        ``verdict``, ``agreement``, ``chance``, ``lift``, ``z``, ``best`` (None when
        unexplained), ``candidates`` (ranked by validation agreement; at least the best of
        each family tried), ``labels`` (rule, precision and recall per label on the test split),
        ``families`` (``fitted`` or why skipped), ``class_evidence``, ``n_train``, ``n_test``,
        ``n_validation``, ``best_guess`` (the winner, whatever the verdict), ``holds_on_test``
        (False when its test agreement falls far under its validation agreement; None, not
        judged, for a rule on classes a ``--reference`` network predicted), and the
        private ``_predict`` (the winner's labels for ``train`` and ``test``).

    Raises
    ------
    ValueError
        Labels or evidence of mismatched lengths, too few rows, or pixels that are not
        28 × 28 whole numbers in 0..255.
    """
    settings = settings or ExplainConfig()
    y_train = np.asarray(evidence.y_train, dtype=np.int64)
    y_test = np.asarray(evidence.y_test, dtype=np.int64)
    for name, values in (*evidence.properties_train.items(), ("class_train", evidence.class_train)):
        if values is not None and len(values) != len(y_train):
            raise ValueError(f"{name} has {len(values)} rows but there are {len(y_train)} training labels")
    for name, values in (*evidence.properties_test.items(), ("class_test", evidence.class_test)):
        if values is not None and len(values) != len(y_test):
            raise ValueError(f"{name} has {len(values)} rows but there are {len(y_test)} test labels")
    pixels_train = _checked_pixels("pixels_train", evidence.pixels_train, len(y_train))
    pixels_test = _checked_pixels("pixels_test", evidence.pixels_test, len(y_test))
    if len(y_train) < 10 or len(y_test) < 1:
        raise ValueError(
            f"explaining labels needs at least 10 training and 1 test rows, got {len(y_train)}, {len(y_test)}"
        )
    labels = np.unique(np.concatenate([y_train, y_test]))
    k = len(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    n_val = max(1, round(settings.validation_share * len(y_train)))
    val_rows, fit_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    y_fit, y_val = y_train[fit_rows], y_train[val_rows]
    rows = (fit_rows, val_rows)
    has_classes = evidence.class_train is not None and evidence.class_test is not None
    props = [p for p in evidence.properties_train if settings.properties is None or p in settings.properties]
    if settings.pixels and pixels_train is not None and pixels_test is not None:
        chosen = screen_pixels(pixels_train[fit_rows], np.searchsorted(labels, y_fit), settings.pixels)
        props += [pixel_name(j) for j in chosen]
    families: dict[str, str] = {}
    n_classes = max(len(evidence.class_names), 1)
    pairs = list(itertools.combinations(props, 2))
    n_full_pairs = min(settings.pair_candidates, len(pairs))
    steps = int(has_classes) * (1 + len(props)) + len(props) + int(bool(pairs)) + n_full_pairs
    task = progress.task("explaining labels", total=max(steps, 1))
    found: dict[str, list[_Fitted]] = {f: [] for f in FAMILIES}

    if has_classes:
        fit = _fit_variants(
            evidence, "class-grouping", [], True, [ClassGrouping(n_classes=n_classes)], y_fit, y_val, rows, settings
        )
        found["class-grouping"] += [fit] if fit else []
        task.advance(1)
    if props:
        segments = range(2, k + settings.extra_segments + 1)
        for p in props:
            models = [PropertyBins(n_segments=s) for s in segments]
            fit = _fit_variants(evidence, "property-bins", [p], False, models, y_fit, y_val, rows, settings)
            found["property-bins"] += [fit] if fit else []
            task.advance(1)
        leaves = sorted({k, k + 1, k + 2, k + 4, 2 * k})
        shortlist = _screen_pairs(evidence, pairs, n_full_pairs, max(4, 2 * k), y_train, rows, seed) if pairs else []
        task.advance(1)
        for p, q in shortlist:
            models = [PropertyPair(max_leaf_nodes=max(2, n), random_state=seed) for n in leaves]
            models.append(PropertyPair(search="lookahead", random_state=seed))
            fit = _fit_variants(evidence, "property-bins", [p, q], False, models, y_fit, y_val, rows, settings)
            found["property-bins"] += [fit] if fit else []
            task.advance(1)
        if has_classes:
            for p in props:
                models = [ClassAndProperty(n_thresholds=t, n_classes=n_classes) for t in (1, 2)]
                fit = _fit_variants(evidence, "class-and-property", [p], True, models, y_fit, y_val, rows, settings)
                found["class-and-property"] += [fit] if fit else []
                task.advance(1)
    task.close()
    for family in FAMILIES:
        if found[family]:
            families[family] = "fitted"
        elif family != "property-bins" and not has_classes:
            families[family] = evidence.notes.get("classes", NO_CLASSES)
        elif family != "class-grouping" and not props:
            families[family] = evidence.notes.get("properties", "skipped: no pixels on the 0..255 scale")
        else:
            families[family] = "skipped: nothing could be fitted"

    everything = [f for fits in found.values() for f in fits]
    chance = float(np.max(np.bincount(np.searchsorted(labels, y_test), minlength=k)) / len(y_test))
    result: dict[str, Any] = {
        "n_train": len(y_train),
        "n_validation": int(n_val),
        "n_test": len(y_test),
        "chance": round(chance, 4),
        "families": families,
        "class_evidence": evidence.class_source,
        "class_names": list(evidence.class_names),
        "settings": settings.model_dump(mode="json"),
    }
    if not everything:
        verdict, lift, z = "unexplained", 0.0, 0.0
        result.update({"verdict": verdict, "agreement": None, "lift": lift, "z": z, "best": None, "candidates": []})
        result["labels"] = _per_label(np.full(len(y_test), -1), y_test, labels, None, settings.label_fit)
        result["_predict"] = None
        return result
    val_chance = float(np.max(np.bincount(np.searchsorted(labels, y_val), minlength=k)) / len(y_val))
    winner = _pick(everything, settings.simplicity_tolerance, settings.simplicity_z, val_chance)
    reported: list[_Fitted] = []
    for family in FAMILIES:
        reported += sorted(found[family], key=lambda f: -f.validation)[:3]
    if winner not in reported:
        reported.append(winner)
    reported.sort(key=lambda f: -f.validation)
    entries = []
    splits: dict[int, str] = {}  # id of an entry -> fingerprint of the labels it gives every row
    best_entry: dict[str, Any] | None = None
    winner_given: dict[str, np.ndarray] = {}
    for fitted in reported:
        x_train, x_test = fitted.columns("train"), fitted.columns("test")
        model = clone(fitted.model).fit(x_train, y_train)
        described = model.describe(evidence.class_names, fitted.properties)
        given = {"train": model.predict(x_train), "test": model.predict(x_test)}
        entry = {
            "kind": fitted.kind,
            "properties": described["properties"],
            "classes": described["classes"],
            "rules": described["rules"],
            "agreement": round(float(np.mean(given["test"] == y_test)), 4),
            "validation_agreement": round(fitted.validation, 4),
            "n_rules": described["n_rules"],
            "thresholds": [round(float(t), 6) for t in described["thresholds"]],
            "params": {key: value for key, value in model.get_params().items() if key != "random_state"},
        }
        entries.append(entry)
        every_row = np.concatenate([given["train"], given["test"]]).astype(np.int64)
        splits[id(entry)] = hashlib.sha256(every_row.tobytes()).hexdigest()
        if fitted is winner:
            best_entry, winner_given, winner_described = entry, given, described
    assert best_entry is not None and winner_given

    def same_rule(e: dict[str, Any]) -> str:
        return json.dumps([e["properties"], splits[id(e)]])

    # a rule found twice, in other words (a pair tree that tests one property, bins on it; a
    # class-and-property rule whose property changes nothing, a grouping), is listed once: same
    # properties, same label for every row of both splits; the entry kept names the other
    # families that found it (``also_found_by``)
    listed = {same_rule(best_entry): best_entry}
    kept = []
    for e in entries:
        rule = same_rule(e)
        if e is best_entry or rule not in listed:
            kept.append(e)
            listed.setdefault(rule, e)
        elif e["kind"] != listed[rule]["kind"] and e["kind"] not in listed[rule].setdefault("also_found_by", []):
            listed[rule]["also_found_by"].append(e["kind"])
    entries = kept
    # hypotheses the data cannot tell from the winner: as simple, and as good on both parts (each
    # family and property set once; the winner's own rule in another family's words, on the
    # same properties, left out)
    equivalent: list[dict[str, Any]] = []
    for e in entries:
        said = {"kind": e["kind"], "properties": e["properties"]}
        if (
            said not in equivalent
            and same_rule(e) != same_rule(best_entry)
            and said != {"kind": best_entry["kind"], "properties": best_entry["properties"]}
            and (len(e["properties"]), e["n_rules"]) == (len(best_entry["properties"]), best_entry["n_rules"])
            and abs(e["validation_agreement"] - best_entry["validation_agreement"]) <= settings.complexity_tolerance
            and abs(e["agreement"] - best_entry["agreement"]) <= settings.complexity_tolerance
        ):
            equivalent.append(said)
    best_entry["equivalent"] = equivalent
    # a rule on classes a network predicted cannot agree better than the network: judged leniently
    lenient = winner.uses_classes and evidence.class_source == "reference"
    explained_lift = settings.reference_fit if lenient else settings.explained_lift
    label_fit = settings.reference_fit if lenient else settings.label_fit
    result.update({"explained_lift": explained_lift, "label_fit": label_fit})
    verdict, lift, z = _verdict(best_entry["agreement"], chance, len(y_test), settings, explained_lift)
    given_labels = np.unique(np.concatenate([winner_given["train"], winner_given["test"]]))
    if verdict == "explained" and set(labels.tolist()) - set(given_labels.tolist()):
        verdict = "partly explained"  # a rule that never gives some label explains only the others
    predicted_test, predicted_train = winner_given["test"], winner_given["train"]
    result.update(
        {
            "verdict": verdict,
            "agreement": best_entry["agreement"],
            "lift": round(lift, 4),
            "z": round(z, 2),
            "best": best_entry if verdict != "unexplained" else None,
            "best_guess": best_entry,
            # not judged on classes a network predicted: it knows its training images better
            # than the test images, so a true rule fits validation better than test there too
            "holds_on_test": None
            if lenient
            else _holds_on_test(
                best_entry["validation_agreement"], n_val, best_entry["agreement"], len(y_test), settings.min_z
            ),
            "candidates": entries,
            "labels": _per_label(
                predicted_test,
                y_test,
                labels,
                winner_described if verdict != "unexplained" else None,
                label_fit,
            ),
            "_predict": {"train": predicted_train, "test": predicted_test},
        }
    )
    return result
