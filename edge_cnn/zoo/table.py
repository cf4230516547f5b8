"""The zoo overview (family, params, MACs at the default input) with a cache.

Building all ~35 architectures takes a while on a small CPU, so each row is cached in
``$EDGECNN_HOME/zoo_table.json`` keyed by a digest of the zoo's source files: editing
a builder invalidates its cached row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from edge_cnn.io import home_dir, write_json
from edge_cnn.zoo.profile import profile
from edge_cnn.zoo.registry import build, list_models, model_info

CACHE_NAME = "zoo_table.json"


def source_digest() -> str:
    digest = hashlib.sha256()
    for file in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def profile_row(name: str, input_shape=None) -> dict:
    """One overview row, building the model at ``input_shape`` (default: the family's)."""
    from edge_cnn.keras import keras

    info = model_info(name)
    shape = tuple(input_shape or info.default_input_shape)
    model = build(name, input_shape=shape)
    totals = profile(model)
    del model
    keras.backend.clear_session()
    return {
        "family": info.family,
        "name": name,
        "params": totals["params"],
        "macs": totals["macs"],
        "input": "x".join(str(d) for d in shape),
    }


def zoo_table(names: list[str] | None = None, on_row: Callable[[str, bool], None] | None = None) -> list[dict]:
    """Rows for ``names`` (default: every registered model), from the cache where it is current;
    ``on_row(name, built)`` after each (``built``: it was not in the cache, so the model was built)."""
    names = names or list_models()
    cache_file = home_dir() / CACHE_NAME
    digest = source_digest()
    try:
        cache = json.loads(cache_file.read_text())
        rows = cache["rows"] if cache.get("digest") == digest else {}
    except (OSError, ValueError, KeyError):
        rows = {}
    changed = False
    for name in names:
        built = name not in rows
        if built:
            rows[name] = profile_row(name)
            changed = True
        if on_row:
            on_row(name, built)
    if changed:
        write_json(cache_file, {"digest": digest, "rows": rows})
    return [rows[name] for name in names]
