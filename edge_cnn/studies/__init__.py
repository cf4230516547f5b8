"""Measurement studies: the experiments behind the README's tables, one module per study.

Each study module says in its docstring what it measures and why, has ``main(argv=None) -> int`` (its
own arguments; bad input is one ``error:`` line and exit code 2) and functions to call from Python.
``edgecnn study NAME [ARGS...]`` and ``tools/*.py`` both run a study's ``main``. ``STUDIES`` is the
one list of studies; a module is imported only when its study runs, so listing them loads no
TensorFlow. What several studies share lives in ``edge_cnn.studies.shared``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType

from edge_cnn.errors import EdgeCNNError

# study name (``edgecnn study NAME``) -> its module
STUDIES = {
    "pedestrian": "edge_cnn.studies.compare_pedestrian",
    "faces": "edge_cnn.studies.compare_faces",
    "faces_lfw": "edge_cnn.studies.lfw_baselines",
    "cv": "edge_cnn.studies.pedestrian_cv",
    "enrollment": "edge_cnn.studies.enrollment_protocol",
    "accuracy": "edge_cnn.studies.accuracy_report",
    "export": "edge_cnn.studies.bench_export",
    "deploy": "edge_cnn.studies.deploy_choice",
    "overhead": "edge_cnn.studies.bench_overhead",
    "train": "edge_cnn.studies.bench_train",
    "detect": "edge_cnn.studies.detect_compare",
}


def load_study(name: str) -> ModuleType:
    """The study's module; an unknown name is an ``EdgeCNNError`` naming the known ones."""
    if name not in STUDIES:
        raise EdgeCNNError(f"unknown study {name!r}: choose one of {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name])


def summary(name: str) -> str:
    """The first line of the study's docstring, read from its source without importing it."""
    source = Path(importlib.util.find_spec(STUDIES[name]).origin).read_text()
    return (ast.get_docstring(ast.parse(source)) or "").split("\n")[0]
