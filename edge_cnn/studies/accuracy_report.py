"""Accuracy report: train the pedestrian and faces_id recipes as shipped and write their test accuracies.

Why: the recipes are the project's claims; this retrains them from scratch and checks the claims on held-out
images. Targets: pedestrian >= 98% (split grouped by source photo), AT&T identities >= 95% (2 images per
person held out). The pedestrian row also reports the Penn-Fudan person vs Penn-Fudan background test
windows alone (same photographs on both sides, so the source cannot give the answer away). Each recipe
trains on its own ``data:`` folder, or on the folder of that name under ``--data-root``.

    edgecnn study accuracy --data-root ../shared/data --out runs/accuracy
    edgecnn study accuracy --recipes faces_id --epochs 5     # a quick look
"""

from __future__ import annotations

import time
from pathlib import Path

from edge_cnn.studies.shared import one_line_errors, recipe_config, study_parser

# packaged recipe name -> the test accuracy it must reach; its data and settings are the recipe's own
TARGETS = {"pedestrian": 0.98, "faces_id": 0.95}


def data_folder(recipe: str, data_root: Path | None) -> Path:
    """The recipe's ``data:`` folder, or the folder of the same name under ``data_root``."""
    from edge_cnn.recipes import load_recipe

    data = Path(load_recipe(recipe)["data"])
    return data if data_root is None else data_root / data.name


def train_recipe(name: str, data: Path, out: Path, epochs: int | None = None) -> dict:
    """Train the packaged recipe ``name`` on ``data`` into ``OUT/name``; its row of the report."""
    from edge_cnn.train import train

    target = TARGETS[name]
    started = time.perf_counter()
    result = train(recipe_config(name, data, out / name, epochs), verbose=2)
    minutes = (time.perf_counter() - started) / 60
    test = result.metrics["test"]
    row = {
        "recipe": name, "model": f"{result.config.model} x{result.config.width or 1} {result.config.img_size} "
                                 f"{result.config.color}",
        "epochs": len(result.history), "train/val/test images": "/".join(
            str(result.metrics["images"][s]) for s in ("train", "val", "test")),
        "test accuracy": test["accuracy"], "target": target, "met": "yes" if test["accuracy"] >= target else "NO",
        "minutes": round(minutes, 1),
    }
    if name == "pedestrian":
        row["Penn-Fudan only test accuracy"] = penn_fudan_accuracy(result.run_dir)
    return row


def penn_fudan_accuracy(run_dir: Path) -> str:
    """Test accuracy on the Penn-Fudan windows only (person and background from the same photos)."""
    from edge_cnn.keras_file import load_keras_model
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train.trainer import evaluate_items

    run = RunDir(run_dir)
    items = [item for item in run.read_split("test") if Path(item[0]).name.startswith("pennfudan")]
    if not items:
        return "-"
    model = load_keras_model(run.model_path)
    metrics = evaluate_items(model, {"test": items}, run.preprocess(), run.labels())["test"]
    return f"{metrics['accuracy']:.4f} ({len(items)} windows)"


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--data-root", type=Path, help="folder holding each recipe's data folder by name "
                                                       "[each recipe's own data: folder]")
    parser.add_argument("--out", type=Path, default=Path("runs") / "accuracy",
                        help="folder for the runs [runs/accuracy]")
    parser.add_argument("--recipes", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' stage-1 epochs")
    parser.add_argument("--md", type=Path, default=None, help="markdown file (default OUT/accuracy.md)")
    args = parser.parse_args(argv)
    folders = {name: data_folder(name, args.data_root) for name in args.recipes}
    for folder in folders.values():
        if not folder.is_dir():
            parser.error(f"{folder} does not exist (--data-root)")

    from edge_cnn.io import write_text
    from edge_cnn.report import print_table, to_markdown

    rows = [train_recipe(name, folders[name], args.out, args.epochs) for name in args.recipes]
    print_table(rows, title="test accuracy of the recipes")
    markdown = args.md or args.out / "accuracy.md"
    write_text(markdown, to_markdown(rows))
    print(f"wrote {markdown}")
    return 0
