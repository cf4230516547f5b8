"""Recipes: YAML files whose keys are a verb's flag names, shipped inside the package.

``edgecnn train --recipe pedestrian`` names one of the files here (``edgecnn pipeline
--target`` does the same); any other value is a path to the user's own YAML file. The
recipes are the one list of targets: the pipeline, the studies and the tests read it
from here. Each file's first comment line is its one-line description.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edge_cnn.errors import EdgeCNNError

RECIPE_DIR = Path(__file__).resolve().parent


def list_recipes() -> dict[str, str]:
    """Recipe name -> its description (the file's first comment line), sorted by name."""
    return {path.stem: _description(path) for path in sorted(RECIPE_DIR.glob("*.yaml"))}


def recipe_path(recipe: str | os.PathLike) -> Path:
    """A packaged recipe's name (``pedestrian``) or the path of a YAML file -> the file."""
    path = Path(recipe)
    if path.is_file():
        return path
    packaged = RECIPE_DIR / f"{recipe}.yaml"
    if packaged.is_file():
        return packaged
    raise EdgeCNNError(
        f"recipe {recipe} is neither a YAML file nor a packaged recipe: use a path or one of {', '.join(list_recipes())}"
    )


def load_recipe(recipe: str | os.PathLike) -> dict[str, Any]:
    """A recipe (name or path) -> {flag name with underscores: value}."""
    import yaml

    path = recipe_path(recipe)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EdgeCNNError(f"recipe {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise EdgeCNNError(f"recipe {path} must be a mapping of flag names to values")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _description(path: Path) -> str:
    first = path.read_text().splitlines()[0] if path.stat().st_size else ""
    return first.lstrip("# ").strip() if first.startswith("#") else path.stem
