"""The data of the report's interactive explorer, for ``explorer.js``.

The explorer draws the 2-D maps of one ``embed`` folder (PCA, t-SNE, UMAP; at most
``max_points`` rows, a seeded sample beyond that) and colours them by the mystery label, each
clustering of the same rows, the explainer's rule and class, and the predictions of a CNN
tested on the same images; hovering shows a row's image. The maps of ``train-som`` folders are
drawn neuron by neuron; a click shows the neuron's prototype and its test images.

Everything goes into the page as one JSON object: numbers as base64 little-endian typed
arrays, images as one zlib-compressed blob of 28×28 uint8 tiles (each distinct image once,
shared by the maps and the SOMs), decompressed in the browser with ``DecompressionStream``,
and each SOM's prototypes as one PNG atlas in grid order.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np

from fmnist_cluster.cluster import ALGORITHMS
from fmnist_cluster.cluster.estimators import sample_rows
from fmnist_cluster.config import ReportConfig
from fmnist_cluster.errors import FmnistError
from fmnist_cluster.report.document import Section
from fmnist_cluster.report.evidence import producer, read_json, read_npz, same_rows
from fmnist_cluster.report.rows import RowImages, to_uint8

SOM_SAMPLES = 200  # test images shown for a clicked neuron, at most


def _b64(array: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


class ImagePool:
    """Distinct 28×28 uint8 images, each stored once."""

    def __init__(self) -> None:
        self._index: dict[bytes, int] = {}
        self._tiles: list[bytes] = []

    def add(self, images: np.ndarray) -> np.ndarray:
        """Pool indices of ``images`` (N, 28, 28) uint8."""
        out = np.empty(len(images), dtype=np.int32)
        for i, tile in enumerate(images):
            key = np.ascontiguousarray(tile, dtype=np.uint8).tobytes()
            if key not in self._index:
                self._index[key] = len(self._tiles)
                self._tiles.append(key)
            out[i] = self._index[key]
        return out

    def payload(self) -> dict[str, Any]:
        blob = zlib.compress(b"".join(self._tiles), 9)
        return {"count": len(self._tiles), "side": 28, "zlib": base64.b64encode(blob).decode()}


def _names(values: np.ndarray, names: Any, prefix: str) -> dict[str, str]:
    out = {}
    for v in sorted({int(v) for v in np.unique(values)}):
        if v < 0:
            out[str(v)] = "noise" if prefix == "cluster" else "none"
        elif isinstance(names, (list, tuple)) and v < len(names):
            out[str(v)] = str(names[v])
        else:
            out[str(v)] = f"{prefix} {v}"
    return out


def _colouring(name: str, values: np.ndarray, rows: np.ndarray, names: Any, prefix: str) -> dict[str, Any]:
    vals = np.asarray(values, dtype=np.int64)[rows]
    return {"name": name, "values": _b64(vals, "i4"), "names": _names(vals, names, prefix)}


def _point_colourings(
    emb: Section,
    sections: list[Section],
    coords: dict[str, np.ndarray],
    rows: np.ndarray,
    images: RowImages,
    inputs: dict[str, str],
) -> list[dict[str, Any]]:
    out = []
    n = len(coords["index"])
    if "y" in coords:
        names = images.class_names(emb)
        out.append(_colouring("mystery label" if names is None else "class", coords["y"], rows, names, "label"))
    clusters = [s for s in sections if s.stage == "cluster" and same_rows(s.metrics, emb.metrics)]
    for clu in clusters:
        suffix = f" ({clu.folder.name})" if len(clusters) > 1 else ""
        labels = read_npz(clu.folder, "labels.npz", "cluster", inputs, ("index",))
        for algo in ALGORITHMS:
            if algo in labels and len(labels[algo]) == n:
                out.append(_colouring(f"{algo}{suffix}", labels[algo], rows, None, "cluster"))
        if "explanation.npz" in clu.manifest.get("outputs", {}):
            expl = read_npz(clu.folder, "explanation.npz", "cluster", inputs)
            meta = read_json(clu.folder, "explanation.json", "cluster", inputs)
            class_names = meta.get("class_names") if isinstance(meta, dict) else None
            if "rule_label" in expl and len(expl["rule_label"]) == n:
                out.append(_colouring(f"explainer's rule{suffix}", expl["rule_label"], rows, None, "label"))
            if "class_id" in expl and len(expl["class_id"]) == n:
                out.append(_colouring(f"Fashion-MNIST class{suffix}", expl["class_id"], rows, class_names, "class"))
    if emb.metrics.get("split") == "test":
        sources = images.sources(emb)
        for cnn in (s for s in sections if s.stage == "train-cnn"):
            if not set(map(str, cnn.manifest.get("inputs", {}).values())) & sources:
                continue
            pred = read_npz(cnn.folder, "predictions.npz", "train-cnn", inputs, ("y_pred",))["y_pred"]
            if len(pred) == n:
                per_class = cnn.metrics.get("per_class") or {}
                names = [str(per_class.get(str(k), {}).get("name", f"label {k}")) for k in range(len(per_class))]
                out.append(_colouring(f"CNN prediction ({cnn.folder.name})", pred, rows, names, "label"))
    return out


def _som_payload(sec: Section, pool: ImagePool, inputs: dict[str, str]) -> dict[str, Any] | None:
    from fmnist_cluster import plots
    from fmnist_cluster.data import load_dataset
    from fmnist_cluster.features import recorded_images
    from fmnist_cluster.plots import as_images

    arrays = read_npz(sec.folder, "som.npz", "train-som", inputs, ("weights", "coords"))
    weights = np.asarray(arrays["weights"], dtype=np.float32)
    n_neurons = weights.shape[0] * weights.shape[1] if weights.ndim == 3 else -1
    bmu = arrays.get("bmu_test")
    if (
        arrays["coords"].shape != (n_neurons, 2)
        or ("dominant" in arrays and arrays["dominant"].shape != (n_neurons,))
        or (bmu is not None and (bmu.ndim != 1 or (len(bmu) and not 0 <= bmu.min() <= bmu.max() < n_neurons)))
    ):
        raise FmnistError(
            f"{sec.folder / 'som.npz'} holds a map whose arrays do not fit together; "
            f"run `{producer('train-som')}` again"
        )
    flat = weights.reshape(n_neurons, -1)
    item: dict[str, Any] = {
        "name": sec.folder.name,
        "rows": int(weights.shape[0]),
        "cols": int(weights.shape[1]),
        "coords": _b64(np.asarray(arrays["coords"], dtype=np.float32).reshape(n_neurons, 2), "f4"),
        "prototypes": None,
    }
    if flat.shape[1] == 784:
        # one PNG atlas, rows × cols tiles in grid order without gaps, dark on white (PNG's
        # filters suit the smooth prototypes better than plain zlib)
        tiles = 255 - to_uint8(flat.reshape(n_neurons, 28, 28))
        png = plots.grey_png(plots.image_grid(tiles, item["cols"], padding=0))
        item["prototypes"] = base64.b64encode(png).decode()
    if "dominant" in arrays:
        item["dominant"] = _b64(arrays["dominant"], "i4")
    folder = recorded_images(sec.manifest)
    if bmu is None or folder is None:
        return item
    try:
        dataset, digest = load_dataset(folder)
    except FmnistError:
        return item
    if not dataset.is_image or len(dataset.x_test) != len(bmu):
        return item
    inputs[str(folder / "data.npz")] = digest
    item["bmu"] = _b64(bmu, "i4")
    item["images"] = _b64(pool.add(to_uint8(as_images(dataset.x_test))), "i4")
    if dataset.y_test is not None:
        item["labels"] = _b64(dataset.y_test, "i4")
        item["label_names"] = _names(dataset.y_test, dataset.class_names, "label")
    item["dominant_names"] = _names(np.arange(dataset.n_classes), dataset.class_names, "label")
    return item


def build_explorer(
    sections: list[Section], config: ReportConfig, inputs: dict[str, str], images: RowImages
) -> tuple[dict[str, Any] | None, str]:
    """The explorer's data and a sentence saying what it shows (or why there is none)."""
    from fmnist_cluster.embed import EMBEDDING_FILE, METHOD_TITLES

    pool = ImagePool()
    data: dict[str, Any] = {"maps": [], "colourings": [], "soms": []}
    notes = []
    embeds = [s for s in sections if s.stage == "embed"]
    if embeds:
        emb = embeds[0]
        coords = read_npz(emb.folder, EMBEDDING_FILE, "embed", inputs, ("index",))
        n = len(coords["index"])
        rows = sample_rows(n, config.max_points, config.seed)
        for method in ("pca", "tsne", "umap"):
            if method in coords:
                xy = np.asarray(coords[method], dtype=np.float32)[rows]
                data["maps"].append({"name": METHOD_TITLES[method], "xy": _b64(xy.reshape(-1), "f4")})
        pics = images(emb)
        data["n"] = len(rows)
        data["split"] = str(emb.metrics.get("split", ""))
        data["rows"] = _b64(np.asarray(coords["index"])[rows], "i4")
        data["colourings"] = _point_colourings(emb, sections, coords, rows, images, inputs)
        if pics is not None and len(pics) == n:
            data["point_images"] = _b64(pool.add(pics[rows]), "i4")
        notes.append(
            f"{len(rows)} of the {n} {data['split']} rows of {emb.folder.name}"
            + ("" if pics is not None else " (their images could not be found: no pictures on hover)")
            + ("; other embed folders are in the evidence only" if len(embeds) > 1 else "")
        )
    for sec in (s for s in sections if s.stage == "train-som"):
        item = _som_payload(sec, pool, inputs)
        if item is not None:
            data["soms"].append(item)
    if data["soms"]:
        notes.append(f"{len(data['soms'])} self-organising map(s)")
    if not data["maps"] and not data["soms"]:
        return None, "No explorer: no embed or train-som folder among the inputs."
    data["images"] = pool.payload()
    return data, "The explorer shows " + "; ".join(notes) + "."


def script_json(data: dict[str, Any]) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element (no ``<``, ``>``, ``&``)."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
