"""The ``preprocess`` stage: read a source, transform it, write ``data.npz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmnist_cluster.artefacts import NULL_PROGRESS, Progress, StageRun
from fmnist_cluster.config import PreprocessConfig
from fmnist_cluster.data.dataset import DATA_FILE
from fmnist_cluster.data.sources import check_source, load_source, source_files
from fmnist_cluster.data.transforms import transform


def run_preprocess(config: PreprocessConfig, out_dir: Path | str, progress: Progress = NULL_PROGRESS) -> dict[str, Any]:
    """The ``preprocess`` stage: read a source, transform it, write ``data.npz``.

    Parameters
    ----------
    config : PreprocessConfig
        Validated stage config.
    out_dir : path
        Output folder; gets ``data.npz``, ``metrics.json`` and ``manifest.json``.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    check_source(config)
    with StageRun("preprocess", Path(out_dir), config.model_dump(mode="json"), seed=config.seed) as run:
        with run.timer("read"):
            for path in source_files(config) if config.source != "torchvision" else []:
                run.add_input(path)
            dataset = load_source(config)
        with run.timer("transform"):
            dataset, record = transform(dataset, config, progress)
        extra = record.pop("_extra_arrays")
        with run.timer("write"):
            run.save_npz(DATA_FILE, **dataset.to_arrays(), **extra)
            metrics = {"source": config.source, **record}
            run.save_json("metrics.json", metrics)
        run.commit()
    return metrics
