"""``evaluate_run(run, data)``: a finished run's best model on another image folder."""

from __future__ import annotations

import os
from typing import Any

from edge_cnn.errors import EdgeCNNError
from edge_cnn.run_dir import RunDir
from edge_cnn.tasks import get_task


def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike, batch_size: int = 64) -> dict[str, Any]:
    """Metrics (as in metrics.json) of the run's model on every readable image of ``data``.

    The folder's class names must be among the run's labels (a folder may lack some);
    images are mapped by class name, never by position.
    """
    from edge_cnn.data import resolve_data, scan_folder
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.train.trainer import evaluate_items

    run = RunDir(run_dir).require("model", "labels", "preprocess")
    if get_task(run.task()).data_kind == "identities":
        raise EdgeCNNError(f"{run.path} is an embed run: verify faces with `edgecnn evaluate {run.path} --protocol lfw "
                           "--pairs pairs.txt --data DIR`; its metrics.json holds the verification of its own splits")
    if get_task(run.task()).data_kind != "folder":
        raise EdgeCNNError(f"{run.path} is a {run.task()} run: `edgecnn evaluate` scores class folders only; its "
                           "metrics.json holds the figures of its own splits")
    labels = run.labels()
    scan = scan_folder(resolve_data(data))
    unknown = [name for name in scan.classes if name not in labels]
    if unknown:
        raise EdgeCNNError(
            f"{scan.root} has class folder(s) {unknown} that the run {run.path} was not trained on "
            f"(its labels: {labels}): rename the folders to the run's class names"
        )
    items = scan.items if scan.presplit is None else [item for part in scan.presplit.values() for item in part]
    mapped = [(path, labels.index(scan.classes[index])) for path, index in items]
    model = load_keras_model(run.model_path)
    metrics = evaluate_items(model, {"data": mapped}, run.preprocess(), labels, batch_size, task=run.task())["data"]
    return {"run": str(run.path), "data": str(scan.root), "labels": labels, **metrics, "skipped": scan.skipped}
