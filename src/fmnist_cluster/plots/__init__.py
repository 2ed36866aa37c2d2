"""Every figure of the toolkit. Functions take arrays (or, for ``tune``, the Optuna study), return
a matplotlib Figure, and never touch the disk; :func:`figure_png` turns a figure into PNG bytes
for :meth:`fmnist_cluster.artefacts.StageRun.save_bytes`. Pictures drawn pixel for pixel (the
SOM prototypes, image strips) are returned as PNG bytes directly.

Figures use the non-interactive Agg backend, so they render on machines with no screen.

* :mod:`~fmnist_cluster.plots.common`: backend, PNG bytes, label colours.
* :mod:`~fmnist_cluster.plots.images`: image grids and montages.
* :mod:`~fmnist_cluster.plots.clustering`: ``cluster``, ``embed`` and decoding figures.
* :mod:`~fmnist_cluster.plots.cnn`: ``train-cnn`` figures.
* :mod:`~fmnist_cluster.plots.som`: ``train-som`` figures.
* :mod:`~fmnist_cluster.plots.tune`: ``tune`` figures (Optuna's visualisation).
"""

import matplotlib

matplotlib.use("Agg")  # before any figure module imports pyplot

from fmnist_cluster.plots.clustering import (
    contingency_heatmap,
    correct_incorrect,
    explained_variance,
    images_per_cluster,
    k_distance_curve,
    label_composition,
    mean_images,
    scatter_2d,
    silhouette_by_k,
)
from fmnist_cluster.plots.cnn import confusion_matrix, learning_curves, misclassified_montage
from fmnist_cluster.plots.common import DPI, figure_png, grey_png, label_colours
from fmnist_cluster.plots.images import (
    as_images,
    image_grid,
    image_strip_png,
    montage,
    stack_rows,
    tile_figure,
    tile_picture_png,
    titled_tiles,
)
from fmnist_cluster.plots.som import (
    PROTOTYPES_MAX_WIDTH,
    SOM_MARKERS,
    som_history,
    som_hit_map,
    som_labels_map,
    som_outliers,
    som_prototypes,
    som_u_matrix,
    som_winner_samples,
)
from fmnist_cluster.plots.tune import tune_history, tune_importances, tune_pareto

__all__ = [
    "DPI",
    "PROTOTYPES_MAX_WIDTH",
    "SOM_MARKERS",
    "as_images",
    "confusion_matrix",
    "contingency_heatmap",
    "correct_incorrect",
    "explained_variance",
    "figure_png",
    "grey_png",
    "image_grid",
    "image_strip_png",
    "images_per_cluster",
    "k_distance_curve",
    "label_colours",
    "label_composition",
    "learning_curves",
    "mean_images",
    "misclassified_montage",
    "montage",
    "scatter_2d",
    "silhouette_by_k",
    "som_history",
    "som_hit_map",
    "som_labels_map",
    "som_outliers",
    "som_prototypes",
    "som_u_matrix",
    "som_winner_samples",
    "stack_rows",
    "tile_figure",
    "tile_picture_png",
    "titled_tiles",
    "tune_history",
    "tune_importances",
    "tune_pareto",
]
