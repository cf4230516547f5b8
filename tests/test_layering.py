"""Each stage imports only the stages before it, and only the entry point imports ``edge_cnn.cli``.

Read from the source (every ``import`` statement, also inside functions), so a lazy import
counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edge_cnn"
# The pipeline's order; a module may import its own stage and any earlier one. Everything not listed
# (errors, io, preprocess, manifest, formats, tasks, backends, timing, machine, ...) lies below every stage.
STAGES = ["zoo", "data", "train", "explain", "export", "bench", "runtime", "detect", "face", "pipeline", "studies"]


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "edge_cnn" or len(parts) < 2:
        return None
    return STAGES.index(parts[1]) if parts[1] in STAGES else None


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "edge_cnn"}
    return found


def test_no_stage_imports_a_later_one():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = stage_of(module)
        for target in imports(path):
            theirs = stage_of(target)
            if theirs is not None and (own is None or theirs > own) and not module.startswith("edge_cnn.cli"):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_only_the_entry_point_imports_cli():
    users = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
             if path.name != "cli.py" or path.parent != PACKAGE
             if any(name == "edge_cnn.cli" or name.startswith("edge_cnn.cli.") for name in imports(path))]
    assert users == []
