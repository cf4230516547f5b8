"""Pedestrian windows, cross-validated by source photo: HOG + linear SVM vs the CNN (fp32 and int8) on EVERY window.

Why: the recipe's fixed test split holds 125 Penn-Fudan windows and HOG+SVM ranks all of them correctly (ROC AUC
1.000), so that split cannot show whether the CNN ranks Penn-Fudan people better (issue 7's target). Here every
window of the data set is scored by a model that never saw its photograph:

(1) the windows are cut into ``--folds`` folds by the recipe's ``group_by`` groups (``edge_cnn.data.grouped_folds``:
    whole source photos per fold, each fold about 1/folds of every class);
(2) for each fold the recipe trains on the other folds (a temporary folder of symlinks, no data copied; its own
    grouped validation split inside them, no test split) into ``OUT/fold<i>``, is exported fp32 + int8, and every
    artifact scores the held-out fold through the runtime;
(3) HOG+SVM needs no training: it scores every window once.

Scores: HOG+SVM's margin (person if > 0), the CNN's P(person) (person = the arg-max class). Each row gives the
accuracy and the ROC AUC of the pooled out-of-fold scores, the per-fold AUCs, and in how many folds the method's
AUC is above HOG+SVM's on the same windows. A finished fold (the same held-out files) is reused: delete
``OUT/fold<i>`` to retrain it, or its ``export`` folder to export it again. This script measures; it asserts
nothing.

    python tools/pedestrian_cv.py --data ../shared/data/pedestrian --out runs/ped_cv
    python tools/pedestrian_cv.py --data ../shared/data/pedestrian --folds 2 --epochs 2 --formats tflite --out /tmp/cv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_pedestrian import ensure_export, load_cnns  # noqa: E402
from enrollment_protocol import link_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "models" / "pedestrian.yaml"
HOG = "HOG + linear SVM (OpenCV)"
SUBSETS = {"all windows": "", "Penn-Fudan only": "pennfudan"}
COLUMNS = ["Subset", "Method", "Windows", "Accuracy (%)", "ROC AUC (out-of-fold)", "ROC AUC per fold (min / median / max)",
           "Folds with AUC above HOG+SVM's"]


class CVError(Exception):
    """Bad input (folder, folds, recipe): printed as ``error: ...``, exit code 2."""


def fold_settings(recipe: Path, data: Path, out: Path, epochs: int | None) -> dict:
    """The recipe's settings for one fold: its training folds as data, no test split of its own."""
    from edge_cnn.cli import load_recipe

    settings = {**load_recipe(recipe), "data": str(data), "out": str(out), "test": 0.0}
    if epochs is not None:
        settings["epochs"] = epochs
    return settings


def train_fold(fold: int, held_out: list[str], training: dict[str, list[str]], args) -> Path:
    """OUT/fold<i>: the recipe trained on ``training`` ({class: files}) and exported; a run finished with the
    same held-out files is reused (and exported again if its export is missing)."""
    from edge_cnn.io import write_json
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig, train

    run = args.out / f"fold{fold}"
    record = run / "held_out.json"
    if record.is_file() and json.loads(record.read_text()) == held_out and RunDir(run).model_path.is_file():
        print(f"fold {fold}: reusing the finished run {run}", flush=True)
    elif run.exists() and any(run.iterdir()):
        raise CVError(f"{run} holds another run (other held-out files, or unfinished): delete it or choose another --out")
    else:
        with tempfile.TemporaryDirectory(prefix="ped_cv_") as tmp:
            data = link_files(Path(tmp) / "training_folds", training)
            config = TrainConfig.from_dict(fold_settings(args.recipe, data, run, args.epochs))
            print(f"fold {fold}: training {config.model} on {sum(map(len, training.values()))} windows for "
                  f"{config.epochs} epochs -> {run}", flush=True)
            result = train(config, verbose=2)
        if result.interrupted:
            raise CVError(f"training of fold {fold} was interrupted: delete {run} and run again")
        write_json(record, held_out)
    ensure_export(run, args.formats)
    return run


def score_fold(run: Path, paths: list[str], formats: list[str], threads: int) -> dict[str, np.ndarray]:
    """'CNN tflite int8' -> P(person) of every held-out window, for each exported artifact of the fold."""
    scores = {}
    for method, predictor in load_cnns(run / "export", formats, threads).items():
        scores[method] = predictor.probabilities(paths)[:, predictor.labels.index("person")]
    return scores


def summary_rows(names: list[str], is_person: np.ndarray, folds: np.ndarray, scores: dict[str, np.ndarray]) -> list[dict]:
    """One row per subset and method: pooled accuracy and AUC, per-fold AUCs, folds above HOG+SVM's AUC."""
    from edge_cnn.baselines import roc_auc

    rows = []
    for subset, prefix in SUBSETS.items():
        chosen = np.array([name.startswith(prefix) for name in names])
        fold_aucs = {}
        for method, score in scores.items():
            per_fold = []
            for fold in sorted(set(folds[chosen].tolist())):
                mask = chosen & (folds == fold)
                if 0 < is_person[mask].sum() < mask.sum():
                    per_fold.append(roc_auc(is_person[mask], score[mask]))
            fold_aucs[method] = np.array(per_fold)
        for method, score in scores.items():
            truth = is_person[chosen]
            predicted = score[chosen] > (0.0 if method == HOG else 0.5)
            aucs = fold_aucs[method]
            above = None if method == HOG else int((aucs > fold_aucs[HOG]).sum())
            rows.append({
                "Subset": subset, "Method": method, "Windows": int(chosen.sum()),
                "Accuracy (%)": round(100 * float((predicted == truth).mean()), 2),
                "ROC AUC (out-of-fold)": round(roc_auc(truth, score[chosen]), 4) if 0 < truth.sum() < len(truth) else None,
                "ROC AUC per fold (min / median / max)": " / ".join(f"{v:.4f}" for v in np.percentile(aucs, [0, 50, 100]))
                if len(aucs) else None,
                "Folds with AUC above HOG+SVM's": None if above is None else f"{above} of {len(aucs)}",
            })
    return rows


def cross_validate(args) -> tuple[list[dict], dict]:
    from edge_cnn.baselines import HogPeopleScorer
    from edge_cnn.cli import load_recipe
    from edge_cnn.data import grouped_folds, scan_folder
    from edge_cnn.preprocess import PreprocessSpec

    scan = scan_folder(args.data)
    if "person" not in scan.classes:
        raise CVError(f"{args.data} has no 'person' class folder (classes: {scan.classes}): pass the pedestrian data")
    recipe = load_recipe(args.recipe)
    folds = np.array(grouped_folds(scan.items, args.folds, seed=int(recipe.get("seed", 0)), group_by=recipe.get("group_by")))
    paths = [path for path, _ in scan.items]
    names = [Path(path).name for path in paths]
    is_person = np.array([scan.classes[label] == "person" for _, label in scan.items])
    print(f"{len(paths)} windows ({int(is_person.sum())} person) in {args.folds} folds grouped by "
          f"{recipe.get('group_by')!r}", flush=True)

    hog, window = HogPeopleScorer(), PreprocessSpec(height=128, width=64, color="rgb")
    scores: dict[str, np.ndarray] = {HOG: np.array([hog.score(window.load_image(path)) for path in paths])}
    for fold in range(args.folds):
        held = np.flatnonzero(folds == fold)
        training: dict[str, list[str]] = {name: [] for name in scan.classes}
        for index in np.flatnonzero(folds != fold):
            training[scan.classes[scan.items[index][1]]].append(paths[index])
        run = train_fold(fold, [paths[i] for i in held], training, args)
        for method, score in score_fold(run, [paths[i] for i in held], args.formats, args.threads).items():
            scores.setdefault(method, np.full(len(paths), np.nan))[held] = score
    missing = [method for method, score in scores.items() if np.isnan(score).any()]
    for method in missing:  # an artifact some fold could not load: its scores are incomplete
        print(f"skipped {method}: not every fold has it", file=sys.stderr)
        del scores[method]
    details = {"data": str(Path(args.data).resolve()), "recipe": str(args.recipe), "folds": args.folds,
               "windows_per_fold": np.bincount(folds, minlength=args.folds).tolist(), "epochs": args.epochs}
    return summary_rows(names, is_person, folds, scores), details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/pedestrian_cv.py --data ../shared/data/pedestrian --out runs/ped_cv\n"
               "  python tools/pedestrian_cv.py --data ../shared/data/pedestrian --folds 2 --epochs 2 --out /tmp/cv",
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "pedestrian",
                        help="pedestrian windows: person/ and background/ folders [../shared/data/pedestrian]")
    parser.add_argument("--out", required=True, type=Path, help="folder for fold<i>/ runs and pedestrian_cv.{md,json}")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds [5]")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="training recipe [models/pedestrian.yaml]")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (a quick run)")
    parser.add_argument("--formats", default="tflite,onnx", help="CNN formats to export and score [tflite,onnx]")
    parser.add_argument("--threads", type=int, default=1, help="threads for the CNN runtime [1]")
    args = parser.parse_args(argv)
    args.formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    from edge_cnn.errors import EdgeCNNError
    from edge_cnn.report import print_table, to_markdown, write_reports

    try:
        rows, details = cross_validate(args)
    except (EdgeCNNError, CVError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(rows, COLUMNS, title=f"Pedestrian windows, {args.folds}-fold cross-validation by source photo")
    print(to_markdown(rows, COLUMNS))
    args.out.mkdir(parents=True, exist_ok=True)
    write_reports(rows, json_path=args.out / "pedestrian_cv.json", md_path=args.out / "pedestrian_cv.md", columns=COLUMNS,
                  extra=details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
