"""Train the pedestrian and faces_id recipes on ../shared/data and write their test accuracies.

Targets on held-out images: pedestrian >= 98% (split grouped by source photo),
AT&T identities >= 95% (2 images per person held out). The pedestrian row also reports the
Penn-Fudan person vs Penn-Fudan background test windows alone (same photographs on both
sides, so the source cannot give the answer away).

    python tools/accuracy_report.py --data-root ../shared/data --out runs/accuracy
    python tools/accuracy_report.py --recipes faces_id --epochs 5     # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"pedestrian": ("models/pedestrian.yaml", "pedestrian", 0.98), "faces_id": ("models/faces_id.yaml",
                                                                                    "att_faces", 0.95)}


def train_recipe(name: str, data_root: Path, out: Path, epochs: int | None) -> dict:
    from edge_cnn.cli import load_recipe
    from edge_cnn.train import TrainConfig, train

    recipe, folder, target = RECIPES[name]
    settings = {**load_recipe(REPO / recipe), "data": str(data_root / folder), "out": str(out / name)}
    if epochs is not None:
        settings["epochs"] = epochs
    started = time.perf_counter()
    result = train(TrainConfig.from_dict(settings), verbose=2)
    minutes = (time.perf_counter() - started) / 60
    test = result.metrics["test"]
    row = {
        "recipe": recipe, "model": f"{result.config.model} x{result.config.width or 1} {result.config.img_size} "
                                   f"{result.config.color}",
        "epochs": len(result.history), "train/val/test images": "/".join(
            str(result.metrics["images"][s]) for s in ("train", "val", "test")),
        "test accuracy": test["accuracy"], "target": target, "met": "yes" if test["accuracy"] >= target else "NO",
        "minutes": round(minutes, 1),
    }
    if name == "pedestrian":
        row["Penn-Fudan only test accuracy"] = _penn_fudan_accuracy(result.run_dir)
    return row


def _penn_fudan_accuracy(run_dir: Path) -> str:
    """Test accuracy on the Penn-Fudan windows only (person and background from the same photos)."""
    from edge_cnn.keras import keras
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train.trainer import evaluate_items

    run = RunDir(run_dir)
    items = [item for item in run.read_split("test") if Path(item[0]).name.startswith("pennfudan")]
    if not items:
        return "-"
    model = keras.models.load_model(run.model_path, compile=False)
    metrics = evaluate_items(model, {"test": items}, run.preprocess(), run.labels())["test"]
    return f"{metrics['accuracy']:.4f} ({len(items)} windows)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "accuracy")
    parser.add_argument("--recipes", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' stage-1 epochs")
    parser.add_argument("--md", type=Path, default=None, help="markdown file (default OUT/accuracy.md)")
    args = parser.parse_args(argv)
    for name in args.recipes:
        if not (args.data_root / RECIPES[name][1]).is_dir():
            parser.error(f"{args.data_root / RECIPES[name][1]} does not exist (--data-root)")

    from edge_cnn.io import write_text
    from edge_cnn.report import print_table, to_markdown

    rows = [train_recipe(name, args.data_root, args.out, args.epochs) for name in args.recipes]
    print_table(rows, title="test accuracy of the recipes")
    markdown = args.md or args.out / "accuracy.md"
    write_text(markdown, to_markdown(rows))
    print(f"wrote {markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
