"""Enrollment of unseen people (issue 7's 30/10 protocol): train on some identities, enroll the others.

Why: a face gallery is only useful if people the model never trained on can be enrolled from a few
images; this protocol measures that on people the training provably never saw.

(1) The identity folders of ``--att`` (one sub-folder per person) are split by a seeded permutation into
    ``--unseen`` people (10) and the training people (the rest: 30 on AT&T).
(2) The faces_id recipe trains on a temporary folder of symlinks holding only the training people (the data
    is never copied; the run's split lists point at the real files) into ``OUT/run``, then the run is
    exported with its embedding output (``head_pool``), fp32 and int8, TFLite and ONNX, into ``OUT/run/export``.
(3) Each unseen person's images are put in a seeded order: the first max(--shots) are the enrollment pool,
    the others are the probes - the SAME probes for every k. For each artifact and k in --shots, k images
    per person are enrolled (``edge_cnn.face.enroll``: one centroid per person) and every probe is identified
    (``edge_cnn.face.identify``, cosine similarity) among the unseen people only.

Columns: closed-set top-1 (the nearest enrolled person is the right one); open-set at the gallery's unknown
threshold: correct (accepted as the right person), unknown (rejected: score below the threshold), wrong
(accepted as someone else). Scores, to calibrate that threshold: a probe's genuine cosine (to its own
person's centroid) and its stranger cosine (the best other person's: the score of someone who is not
enrolled), their medians, and the equal-error point (the threshold where as many genuine probes are rejected
as strangers accepted); percentiles of all three distributions (impostor: every other person) are in the
JSON's ``scores``. A finished ``OUT/run`` trained on the same people is reused (delete it to retrain), and
so is its export when it holds centred embeddings.
With ``--export DIR`` step (2) is skipped: the embedding export given (a model trained elsewhere, e.g. on
LFW with ``--task embed``, that never saw these people) is measured on the same unseen people and probes.
Issue 7's target: enrollment of unseen people >= 90%; issue 16's: the LFW-trained model >= 97% at k = 1.
This study measures; it asserts nothing.

    edgecnn study enrollment --att ../shared/data/att_faces --out runs/enrollment
    edgecnn study enrollment --att ../shared/data/att_faces --epochs 2 --formats tflite --out /tmp/enr
    edgecnn study enrollment --att ../shared/data/att_faces --export runs/lfw/export --out runs/lfw/att_enrollment
"""

from __future__ import annotations

import inspect
import json
import tempfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_cnn.errors import EdgeCNNError
from edge_cnn.formats import embedded_formats
from edge_cnn.studies.shared import (add_runtime_options, link_files, load_cnns, one_line_errors, recipe_config,
                                     study_parser, write_report)

RECIPE = "faces_id"
COLUMNS = ["Artifact", "k (enrolled/person)", "People", "Probes", "Top-1 (%)", "Correct at threshold (%)",
           "Unknown (%)", "Wrong accepted (%)", "Genuine cos (median)", "Stranger cos (median)", "EER (%)",
           "EER threshold"]
PERCENTILES = (0, 5, 50, 95, 100)


# --- selection -----------------------------------------------------------------------


def identity_folders(att: Path) -> dict[str, list[Path]]:
    """{person: sorted image files} for every visible sub-folder of ``att`` that holds images."""
    from edge_cnn.face.gallery import person_folders

    if not att.is_dir():
        raise EdgeCNNError(f"--att {att} is not a folder: pass an AT&T-like folder (one sub-folder per person)")
    return person_folders(att)


def split_identities(names: list[str], unseen: int, seed: int) -> tuple[list[str], list[str]]:
    """(training, unseen) people, each sorted: the first ``unseen`` of a seeded permutation are unseen."""
    if unseen < 2:
        raise EdgeCNNError(f"--unseen {unseen}: identification needs at least 2 unseen people")
    if len(names) < unseen + 2:
        raise EdgeCNNError(
            f"{len(names)} identity folder(s) with images, but --unseen {unseen} needs at least {unseen + 2} "
            f"({unseen} unseen + 2 to train on): use a folder with more people or a smaller --unseen"
        )
    order = np.random.default_rng(seed).permutation(len(names))
    chosen = {names[i] for i in order[:unseen]}
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]


def enrollment_order(person: str, files: list[Path], seed: int) -> list[Path]:
    """The person's readable files in a seeded order that depends only on the seed and the person's name."""
    rng = np.random.default_rng([seed, zlib.crc32(person.encode())])
    return [files[i] for i in rng.permutation(len(files))]


def plan_enrollment(people: dict[str, list[Path]], unseen: list[str], shots: list[int], seed: int
                    ) -> tuple[dict[str, dict[str, list[str]]], list[dict[str, str]]]:
    """{person: {"pool": first max(shots) files, "probes": the rest}} and the unreadable files left out."""
    from edge_cnn.data.folder import image_problem

    plan, skipped = {}, []
    for person in unseen:
        readable = []
        for file in people[person]:
            reason = image_problem(file)
            if reason:
                skipped.append({"path": str(file), "reason": reason})
            else:
                readable.append(file)
        if len(readable) <= max(shots):
            raise EdgeCNNError(
                f"unseen person {person} has {len(readable)} readable image(s): enrolling {max(shots)} and keeping "
                "at least one probe needs more; add images or lower --shots"
            )
        order = [str(f) for f in enrollment_order(person, readable, seed)]
        plan[person] = {"pool": order[: max(shots)], "probes": order[max(shots):]}
    return plan, skipped


def link_people(root: Path, folders: dict[str, Path]) -> Path:
    """``root/<person>`` -> the person's real folder: a training folder that copies nothing."""
    root.mkdir(parents=True)
    for person, folder in folders.items():
        (root / person).symlink_to(folder.resolve(), target_is_directory=True)
    return root


# --- training and export ---------------------------------------------------------------


def finished_run(run: Path, training: list[str], config) -> bool:
    """True when ``run`` already holds a finished run of the same people, epochs and seed (reused as is)."""
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import TrainConfig

    run_dir = RunDir(run)
    if not (run_dir.metrics_path.is_file() and run_dir.model_path.is_file()):
        return False
    saved = TrainConfig.load(run_dir.config_path)
    same = (saved.epochs, saved.seed, saved.model) == (config.epochs, config.seed, config.model)
    if run_dir.labels() != training or not same:
        raise EdgeCNNError(
            f"{run} holds a run of other people or settings (epochs {saved.epochs}, seed {saved.seed}): "
            "choose another --out or delete that run"
        )
    return True


def train_and_export(att_people: dict[str, list[Path]], training: list[str], out: Path, recipe: str | Path,
                     epochs: int | None, formats: Sequence[str]) -> tuple[Path, dict]:
    """OUT/run trained on the training people only (reused when finished), exported with embeddings."""
    from edge_cnn.export import export
    from edge_cnn.run_dir import RunDir
    from edge_cnn.train import train

    run = out / "run"
    with tempfile.TemporaryDirectory(prefix="enroll_train_") as tmp:
        data = Path(tmp) / "training_people"
        config = recipe_config(recipe, data, run, epochs)
        if finished_run(run, training, config):
            print(f"reusing the finished run {run} (trained on the same {len(training)} people)", flush=True)
        else:
            link_people(data, {person: att_people[person][0].parent for person in training})
            print(f"training {config.model} on {len(training)} people for {config.epochs} epochs -> {run}", flush=True)
            result = train(config, verbose=2)
            if result.interrupted:
                raise EdgeCNNError(f"training was interrupted: run again with another --out, or resume {run}")
        export_dir = RunDir(run).export_dir
        if not _has_embedding_export(export_dir, formats):
            print(f"exporting {run} with embeddings (fp32 + int8: {', '.join(formats)}) ...", flush=True)
            export(run, format=list(formats), int8=True, embedding=True,
                   log=lambda message: print(f"  export: {message}", flush=True))
    metrics = json.loads(RunDir(run).metrics_path.read_text())
    return export_dir, {"run": str(run.resolve()), "epochs": metrics["epochs"], "best_epoch": metrics["best_epoch"],
                        "classifier_test_accuracy": metrics["test"]["accuracy"],
                        "classifier_test_images": metrics["test"]["images"]}


def given_export(export_dir: Path) -> tuple[Path, dict]:
    """An embedding export trained elsewhere (``--export``), checked before any enrollment."""
    from edge_cnn.manifest import MANIFEST_NAME, load_manifest

    if not (export_dir / MANIFEST_NAME).is_file():
        raise EdgeCNNError(f"--export {export_dir} holds no {MANIFEST_NAME}: pass the export folder of an embedding "
                           "model (edgecnn export RUN --int8 on a --task embed run)")
    manifest = load_manifest(export_dir)
    if not any(output.meaning == "embedding" for artifact in manifest.artifacts for output in artifact.outputs):
        raise EdgeCNNError(f"--export {export_dir} has no embedding output: export a --task embed run, or a "
                           "classifier with --embedding")
    return export_dir, {"trained_on": f"none of these people (--export {export_dir})", "task": manifest.task}


def _has_embedding_export(export_dir: Path, formats: Sequence[str]) -> bool:
    from edge_cnn.manifest import load_manifest

    if not (export_dir / "manifest.json").is_file():
        return False
    artifacts = load_manifest(export_dir).artifacts
    done = {(a.format, a.precision) for a in artifacts
            if any(o.meaning == "embedding" for o in a.outputs) and a.optimization.get("embedding", {}).get("centred")}
    return all((f, p) in done for f in formats for p in ("fp32", "int8"))


# --- enrollment and identification --------------------------------------------------------


def gallery_folders(root: Path, plan: dict[str, dict[str, list[str]]], shots: list[int]) -> dict[int, Path]:
    """{k: folder of symlinks to the first k pool images of each unseen person}."""
    return {k: link_files(root / f"enroll_k{k}", {p: items["pool"][:k] for p, items in plan.items()}) for k in shots}


def measure(artifact: str, predictor, galleries: dict[int, Path], probes: list[tuple[str, str]],
            threshold: float) -> tuple[list[dict], list[dict]]:
    """One row per k: enroll from the k-image gallery folder, identify every probe among the unseen people;
    and per k the genuine / stranger / impostor cosine distributions."""
    from edge_cnn.face import enroll, identify
    from edge_cnn.face.gallery import UNKNOWN

    truth = np.array([person for _, person in probes])
    rows, scores = [], []
    for k, folder in galleries.items():
        gallery, skipped = enroll(predictor, folder)
        if skipped:
            raise EdgeCNNError(f"enrollment skipped {skipped[0]['path']}: {skipped[0]['reason']}")
        results = identify(predictor, gallery, [path for path, _ in probes], threshold)
        nearest = np.array([r.nearest for r in results])
        named = np.array([r.identity for r in results])
        percent = lambda hits: round(100 * float(np.mean(hits)), 2)  # noqa: E731
        rows.append({"Artifact": artifact, "k (enrolled/person)": k, "People": len(gallery.names),
                     "Probes": len(probes), "Top-1 (%)": percent(nearest == truth),
                     "Correct at threshold (%)": percent(named == truth), "Unknown (%)": percent(named == UNKNOWN),
                     "Wrong accepted (%)": percent((named != truth) & (named != UNKNOWN))})
        genuine, stranger, impostor = cosine_scores(predictor, gallery, probes)
        eer, eer_threshold = equal_error(genuine, stranger)
        rows[-1].update({"Genuine cos (median)": round(float(np.median(genuine)), 3),
                         "Stranger cos (median)": round(float(np.median(stranger)), 3),
                         "EER (%)": round(100 * eer, 2), "EER threshold": round(eer_threshold, 3)})
        scores.append({"artifact": artifact, "k": k, "eer": eer, "eer_threshold": eer_threshold,
                       **{name: _percentiles(values) for name, values in
                          (("genuine", genuine), ("stranger", stranger), ("impostor", impostor))}})
    return rows, scores


def cosine_scores(predictor, gallery, probes: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(genuine, stranger, impostor) cosines: each probe to its own centroid, to the best other person's
    (what a person who is not enrolled scores), and to every other person's."""
    similarity = np.atleast_2d(predictor.embed([path for path, _ in probes])) @ gallery.centroids.T
    own = np.array([gallery.names.index(person) for _, person in probes])
    is_own = np.zeros_like(similarity, dtype=bool)
    is_own[np.arange(len(own)), own] = True
    others = np.where(is_own, -np.inf, similarity)
    return similarity[is_own], others.max(axis=1), similarity[~is_own]


def equal_error(genuine: np.ndarray, stranger: np.ndarray) -> tuple[float, float]:
    """(rate, threshold) where the share of genuine scores below the threshold (falsely 'unknown') is
    closest to the share of stranger scores at or above it (falsely accepted); the rate is their mean."""
    candidates = np.unique(np.concatenate([genuine, stranger]))
    rejected = np.array([np.mean(genuine < t) for t in candidates])
    accepted = np.array([np.mean(stranger >= t) for t in candidates])
    best = int(np.argmin(np.abs(rejected - accepted)))
    return float((rejected[best] + accepted[best]) / 2), float(candidates[best])


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)), 4) for q in PERCENTILES}


def default_threshold() -> float:
    """The unknown threshold ``edge_cnn.face.identify`` uses when none is given."""
    from edge_cnn.face import identify

    return float(inspect.signature(identify).parameters["threshold"].default)


def run_protocol(att: Path, out: Path, unseen: int = 10, shots: Sequence[int] = (1, 2, 3), seed: int = 0,
                 recipe: str | Path = RECIPE, epochs: int | None = None, formats: Sequence[str] = embedded_formats(),
                 threads: int = 1, threshold: float | None = None, export: Path | None = None
                 ) -> tuple[list[dict], dict]:
    """(rows, facts): split the people, train and export on the training ones (or take ``export``), enroll
    and identify the others."""
    shots = sorted(set(shots))
    people = identity_folders(att.absolute())
    training, unseen_people = split_identities(sorted(people), unseen, seed)
    plan, skipped = plan_enrollment(people, unseen_people, shots, seed)
    print(f"{len(training)} training people, {len(unseen_people)} unseen: {', '.join(unseen_people)}", flush=True)
    export_dir, run_facts = (given_export(export) if export is not None
                             else train_and_export(people, training, out, recipe, epochs, formats))
    threshold = default_threshold() if threshold is None else threshold
    probes = [(path, person) for person, items in plan.items() for path in items["probes"]]
    rows, scores = [], []
    with tempfile.TemporaryDirectory(prefix="enroll_galleries_") as tmp:
        galleries = gallery_folders(Path(tmp), plan, shots)
        for name, predictor in load_cnns(export_dir, formats, threads).items():
            print(f"enrolling and identifying with {predictor.describe()}", flush=True)
            artifact_rows, artifact_scores = measure(name.removeprefix("CNN "), predictor, galleries, probes, threshold)
            rows += artifact_rows
            scores += artifact_scores
    facts = {"att": str(att.resolve()), "seed": seed, "shots": shots, "threshold": threshold,
             "split": {"training": training, "unseen": unseen_people}, "enrollment": plan, "skipped": skipped,
             "export": str(export_dir.resolve()), "scores": scores, **run_facts}
    return rows, facts


def shot_counts(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3] (an argparse type: positive integers, sorted, each once)."""
    import argparse

    try:
        shots = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} must be a comma list of integers, like 1,2,3") from None
    if not shots or shots[0] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive integers")
    return shots


@one_line_errors
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = study_parser(__doc__, prog)
    parser.add_argument("--att", required=True, type=Path, help="AT&T-like folder: one sub-folder of images per person")
    parser.add_argument("--out", required=True, type=Path, help="folder for run/ and enrollment_protocol.{json,md}")
    parser.add_argument("--unseen", type=int, default=10, help="people held out of training and enrolled [10]")
    parser.add_argument("--shots", type=shot_counts, default="1,2,3",
                        help="images enrolled per person, a comma list [1,2,3]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the people split and the image orders [0]")
    parser.add_argument("--recipe", default=RECIPE, help=f"training recipe: a packaged name or a YAML file [{RECIPE}]")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (a quick run)")
    parser.add_argument("--threshold", type=float, help="unknown threshold (default: the face gallery's default)")
    parser.add_argument("--export", type=Path, help="measure this embedding export instead of training on the "
                                                    "other people (e.g. a model trained on LFW)")
    add_runtime_options(parser)
    args = parser.parse_args(argv)
    rows, facts = run_protocol(args.att, args.out, args.unseen, args.shots, args.seed, args.recipe, args.epochs,
                               args.formats, args.threads, args.threshold, args.export)
    split = facts["split"]
    trained = "none of them trained on" if args.export else f"{len(split['training'])} trained on"
    title = f"Enrollment of {len(split['unseen'])} unseen people ({trained})"
    write_report(rows, facts, COLUMNS, title, args.out, "enrollment_protocol")
    return 0
