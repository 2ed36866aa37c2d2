"""What a mystery label means: hypotheses about the rule behind the labels, fitted on the
training split, chosen on a validation share of it and scored on the test split.

* :mod:`~fmnist_cluster.explain.properties` -- the image properties and their formulas;
* :mod:`~fmnist_cluster.explain.cuts` -- thresholds on one value (bins, exact segmentation);
* :mod:`~fmnist_cluster.explain.lookahead` -- a depth-two tree on two values whose root split
  looks one level ahead;
* :mod:`~fmnist_cluster.explain.hypotheses` -- the hypothesis families as scikit-learn
  classifiers (:class:`ClassGrouping`, :class:`PropertyBins`, :class:`PropertyPair`,
  :class:`ClassAndProperty`);
* :mod:`~fmnist_cluster.explain.search` -- :func:`explain`: fit, choose, score, judge;
* :mod:`~fmnist_cluster.explain.evidence` -- :class:`Evidence` (labels, properties, pixels and
  classes of both splits) and gathering it from artefacts;
* :mod:`~fmnist_cluster.explain.stage` -- the explainer inside ``cluster`` (files, figures);
* :mod:`~fmnist_cluster.explain.figures` -- its figures.

Used from Python::

    from fmnist_cluster.explain import Evidence, explain, image_properties
    result = explain(Evidence(y_train, y_test, props_train, props_test))
"""

from fmnist_cluster.explain.evidence import Evidence
from fmnist_cluster.explain.hypotheses import ClassAndProperty, ClassGrouping, PropertyBins, PropertyPair
from fmnist_cluster.explain.properties import PROPERTIES, image_properties
from fmnist_cluster.explain.search import FAMILIES, VERDICTS, explain, shift_note, weak_labels

__all__ = [
    "FAMILIES",
    "PROPERTIES",
    "VERDICTS",
    "ClassAndProperty",
    "ClassGrouping",
    "Evidence",
    "PropertyBins",
    "PropertyPair",
    "explain",
    "image_properties",
    "shift_note",
    "weak_labels",
]
