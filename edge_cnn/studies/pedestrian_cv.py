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
``OUT/fold<i>`` to retrain it, or its ``export`` folder to export it again. This study measures; it asserts
nothing.

    edgecnn study cv --data ../shared/data/pedestrian --out runs/ped_cv
    edgecnn study cv --data ../shared/data/pedestrian --folds 2 --epochs 2 --formats tflite --out /tmp/cv
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.formats import embedded_formats
from edge_cnn.studies.shared import (HOG_METHOD, add_runtime_options, ensure_export, hog_window, link_files, load_cnns,
                                     one_line_errors, recipe_config, study_parser, write_report)

RECIPE = "pedestrian"
SUBSETS = {"all windows": "", "Penn-Fudan only": "pennfudan"}
COLUMNS = ["Subset", "Method", "Windows", "Accuracy (%)", "ROC AUC (out-of-fold)", "ROC AUC per fold (min / median / max)",
           "Folds with AUC above HOG+SVM's"]


def train_fold(fold: int, held_out: list[str], training: dict[str, list[str]], out: Path, recipe: str | Path,
               epochs: int | None, formats: Sequence[str]) -> Path:
    """OUT/fold<i>: the recipe trained on ``training`` ({class: files}) and exported; a run finished with the
    same held-out files is reused (and exported again if its export is missing)."""
    from edge_cnn.io import write_json
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import train

    run = out / f"fold{fold}"
    record = run / "held_out.json"
    if record.is_file() and json.loads(record.read_text()) == held_out and RunDir(run).model_path.is_file():
        print(f"fold {fold}: reusing the finished run {run}", flush=True)
    elif run.exists() and any(run.iterdir()):
        raise EdgeCNNError(f"{run} holds another run (other held-out files, or unfinished): delete it or choose another --out")
    else:
        with tempfile.TemporaryDirectory(prefix="ped_cv_") as tmp:
            data = link_files(Path(tmp) / "training_folds", training)
            config = recipe_config(recipe, data, run, epochs, test=0.0)
            print(f"fold {fold}: training {config.model} on {sum(map(len, training.values()))} windows for "
                  f"{config.epochs} epochs -> {run}", flush=True)
            result = train(config, verbose=2)
        if result.interrupted:
            raise EdgeCNNError(f"training of fold {fold} was interrupted: delete {run} and run again")
        write_json(record, held_out)
    ensure_export(run, formats)
    return run


def score_fold(run: Path, paths: list[str], formats: Sequence[str], threads: int) -> dict[str, np.ndarray]:
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
            predicted = score[chosen] > (0.0 if method == HOG_METHOD else 0.5)
            aucs = fold_aucs[method]
            above = None if method == HOG_METHOD else int((aucs > fold_aucs[HOG_METHOD]).sum())
            rows.append({
                "Subset": subset, "Method": method, "Windows": int(chosen.sum()),
                "Accuracy (%)": round(100 * float((predicted == truth).mean()), 2),
                "ROC AUC (out-of-fold)": round(roc_auc(truth, score[chosen]), 4) if 0 < truth.sum() < len(truth) else None,
                "ROC AUC per fold (min / median / max)": " / ".join(f"{v:.4f}" for v in np.percentile(aucs, [0, 50, 100]))
                if len(aucs) else None,
                "Folds with AUC above HOG+SVM's": None if above is None else f"{above} of {len(aucs)}",
            })
    return rows


def cross_validate(data: Path, out: Path, folds: int = 5, recipe: str | Path = RECIPE, epochs: int | None = None,
                   formats: Sequence[str] = embedded_formats(), threads: int = 1) -> tuple[list[dict], dict]:
    """(rows, facts): every window of ``data`` scored out of fold by HOG+SVM and each fold's exported CNNs."""
    from edge_cnn.baselines import HogPeopleScorer
    from edge_cnn.data import grouped_folds, scan_folder
    from edge_cnn.recipes import load_recipe

    scan = scan_folder(data)
    if "person" not in scan.classes:
        raise EdgeCNNError(f"{data} has no 'person' class folder (classes: {scan.classes}): pass the pedestrian data")
    settings = load_recipe(recipe)
    fold_of = np.array(grouped_folds(scan.items, folds, seed=int(settings.get("seed", 0)),
                                     group_by=settings.get("group_by")))
    paths = [path for path, _ in scan.items]
    names = [Path(path).name for path in paths]
    is_person = np.array([scan.classes[label] == "person" for _, label in scan.items])
    print(f"{len(paths)} windows ({int(is_person.sum())} person) in {folds} folds grouped by "
          f"{settings.get('group_by')!r}", flush=True)

    hog, window = HogPeopleScorer(), hog_window()
    scores: dict[str, np.ndarray] = {HOG_METHOD: np.array([hog.score(window.load_image(path)) for path in paths])}
    for fold in range(folds):
        held = np.flatnonzero(fold_of == fold)
        training: dict[str, list[str]] = {name: [] for name in scan.classes}
        for index in np.flatnonzero(fold_of != fold):
            training[scan.classes[scan.items[index][1]]].append(paths[index])
        run = train_fold(fold, [paths[i] for i in held], training, out, recipe, epochs, formats)
        for method, score in score_fold(run, [paths[i] for i in held], formats, threads).items():
            scores.setdefault(method, np.full(len(paths), np.nan))[held] = score
    missing = [method for method, score in scores.items() if np.isnan(score).any()]
    for method in missing:  # an artifact some fold could not load: its scores are incomplete
        print(f"skipped {method}: not every fold has it", file=sys.stderr)
        del scores[method]
    facts = {"data": str(Path(data).resolve()), "recipe": str(recipe), "folds": folds,
             "windows_per_fold": np.bincount(fold_of, minlength=folds).tolist(), "epochs": epochs}
    return summary_rows(names, is_person, fold_of, scores), facts


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--data", type=Path, help="pedestrian windows: person/ and background/ folders "
                                                  "[the recipe's data: ../shared/data/pedestrian]")
    parser.add_argument("--out", required=True, type=Path, help="folder for fold<i>/ runs and pedestrian_cv.{md,json}")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds [5]")
    parser.add_argument("--recipe", default=RECIPE, help=f"training recipe: a packaged name or a YAML file [{RECIPE}]")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (a quick run)")
    add_runtime_options(parser)
    args = parser.parse_args(argv)

    from edge_cnn.recipes import load_recipe

    data = args.data or load_recipe(args.recipe).get("data")
    if data is None:
        raise EdgeCNNError(f"recipe {args.recipe} names no data folder: pass --data")
    rows, facts = cross_validate(Path(data), args.out, args.folds, args.recipe, args.epochs, args.formats, args.threads)
    write_report(rows, facts, COLUMNS, f"Pedestrian windows, {args.folds}-fold cross-validation by source photo",
                 args.out, "pedestrian_cv")
    return 0
