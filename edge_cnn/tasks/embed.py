"""Face embedding: a head that maps a backbone's feature map to an L2-normalised vector, trained as
identity classification through a margin head (``edge_cnn.train.margin``) that is never saved, and
scored by verification (same person or not, by cosine similarity) on people it never trained on.

Why verification and not classification: the people verified in deployment are not the training
people, so the class centres are thrown away and only the embedding ships; what matters is whether
two photos of one unseen person are closer than photos of two unseen people.

Head (layer names are the contract): ``head_pool`` (global average or max pooling, or Flatten, as the
classify task) -> ``embed_dense`` (Dense to ``embedding_dim``, no bias: BN follows) -> ``embed_bn`` ->
``embed_l2`` (UnitNormalization, a built-in layer the safe loader accepts; no Lambda). A backbone that
ends in its own embedding, a 1x1 map of ``embedding_dim`` channels (MobileFaceNet's GDConv -> 1x1 conv ->
BN), keeps it: ``head_pool`` flattens it and ``embed_l2`` normalises it, without a second dense layer.
The saved model is image -> unit-length embedding; exports carry it as their one output with the
manifest meaning ``embedding`` (what the runtime's ``Predictor.embed`` and the face gallery read).

Numpy at import: Keras is imported inside the methods that build the head or the loss.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edge_cnn.tasks import Task, register_task
from edge_cnn.tasks.classify import HEAD_POOL, _pooling_layer
from edge_cnn.tasks.verification import best_threshold, roc_curve

EMBED_DENSE, EMBED_BN, EMBED_L2 = "embed_dense", "embed_bn", "embed_l2"
MEANING = "embedding"  # the manifest meaning the runtime and the gallery already read
GENUINE_PER_PERSON = 20  # cap on same-person pairs per person in a split's verification pairs
PAIR_SEED = 0  # the pairs of a split are the same for every epoch, run and artifact


def identity_pairs(identities: Sequence[int], seed: int = PAIR_SEED,
                   genuine_per_person: int = GENUINE_PER_PERSON) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index_a, index_b, same) over images labelled by person: every same-person pair of each person
    (at most ``genuine_per_person``, drawn with ``seed``), then as many different-person pairs drawn at
    random. Balanced, as LFW's pairs, so accuracy at the best threshold is comparable to LFW's."""
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    first, second = [], []
    for person in np.unique(identities):
        members = np.flatnonzero(identities == person)
        pairs = [(a, b) for i, a in enumerate(members) for b in members[i + 1:]]
        if len(pairs) > genuine_per_person:
            pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), genuine_per_person, replace=False))]
        first.extend(a for a, _ in pairs)
        second.extend(b for _, b in pairs)
    genuine = len(first)
    if genuine and len(np.unique(identities)) > 1:
        drawn = 0
        while drawn < genuine:
            a, b = rng.integers(0, len(identities), 2)
            if identities[a] != identities[b]:
                first.append(int(a))
                second.append(int(b))
                drawn += 1
    same = np.zeros(len(first), dtype=bool)
    same[:genuine] = True
    return np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64), same


def verification_metrics(embeddings: np.ndarray, identities: Sequence[int]) -> dict[str, Any]:
    """Verification of a split's images among themselves (``identity_pairs``): accuracy at the best
    threshold chosen on these very pairs (an optimistic figure for tracking training; LFW's protocol,
    ``edgecnn evaluate --protocol lfw``, chooses it on other folds), that threshold, and ROC AUC."""
    identities = np.asarray(identities, dtype=np.int64).reshape(-1)
    first, second, same = identity_pairs(identities)
    result: dict[str, Any] = {"images": int(len(identities)), "people": int(len(np.unique(identities))),
                              "pairs": int(len(same)), "genuine_pairs": int(same.sum()),
                              "accuracy": None, "threshold": None, "auc": None}
    if not same.any() or same.all():
        return result  # no genuine or no impostor pair: nothing to verify
    vectors = _unit(np.asarray(embeddings, dtype=np.float64).reshape(len(identities), -1))
    scores = np.sum(vectors[first] * vectors[second], axis=1)
    threshold, accuracy = best_threshold(scores, same)
    fpr, tpr, _ = roc_curve(scores, same)
    result.update(accuracy=accuracy, threshold=threshold, auc=float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)))
    return result


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row i of ``a`` with row i of ``b`` (1 for identical directions)."""
    a, b = _unit(np.asarray(a, np.float64).reshape(len(a), -1)), _unit(np.asarray(b, np.float64).reshape(len(b), -1))
    return np.sum(a * b, axis=1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class Embed(Task):
    name = "embed"
    model_suffix = "embedder"
    head_layers = (HEAD_POOL, EMBED_DENSE, EMBED_BN, EMBED_L2)
    feature_layer = EMBED_L2  # the model's output is already the embedding
    data_kind = "identities"
    score_name = "verification accuracy"
    try_command = "edgecnn face verify {export} A.jpg B.jpg"

    def build_head(self, features, num_outputs: int, *, dropout: float = 0.0, pooling: str = "avg"):
        """pooling -> Dense(``num_outputs`` = the embedding size) -> BN -> L2 normalisation; a backbone
        ending in a 1x1 map of ``num_outputs`` channels (its own embedding) is only flattened and normalised.
        ``dropout`` is not used: dropping embedding inputs at random blurs the angles the margin shapes."""
        from edge_cnn.keras import layers

        own_embedding = tuple(features.shape[1:]) == (1, 1, int(num_outputs))
        x = (layers.Flatten(name=HEAD_POOL) if own_embedding else _pooling_layer(pooling))(features)
        if not own_embedding:
            x = layers.Dense(int(num_outputs), use_bias=False, name=EMBED_DENSE)(x)
            x = layers.BatchNormalization(name=EMBED_BN)(x)
        return layers.UnitNormalization(name=EMBED_L2)(x)

    def loss(self, label_smoothing: float = 0.0):
        """Cross-entropy on the margin head's logits (the model trained is ``edge_cnn.train.margin``'s
        ``margin_training_model``; the same loss as its ``margin_loss``, built here because the task table
        lies below the training stage)."""
        from edge_cnn.keras import keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def metrics(self) -> list[Any]:
        return ["accuracy"]  # of the training people's classes, through the margin head (a training signal only)

    def evaluate(self, truth: np.ndarray, outputs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
        """``truth``: each image's person index; ``outputs``: its embedding."""
        return verification_metrics(outputs, truth)

    def output_meaning(self, ends_in_softmax: bool, logits: bool) -> str:
        return MEANING

    def classes_in_output(self, shape: Sequence[int]) -> int:
        """0: the output is a vector per image, not one value per label (labels are the run's people)."""
        return 0

    def postprocess(self, values: np.ndarray, meaning: str, labels: Sequence[str], topk: int,
                    paths: Sequence[str | None], **options: Any) -> list[np.ndarray]:
        """One unit-length float32 embedding per image."""
        return list(_unit(np.asarray(values, np.float64).reshape(len(values), -1)).astype(np.float32))

    def score(self, outputs: np.ndarray, truth: np.ndarray | None) -> float | None:
        """Verification accuracy (%) over the pairs of the labelled images (``identity_pairs``)."""
        if truth is None or len(truth) == 0:
            return None
        accuracy = verification_metrics(outputs, truth)["accuracy"]
        return None if accuracy is None else 100.0 * accuracy

    def parity(self, outputs: np.ndarray, reference: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
        """Verification accuracy (with ``truth``), ``agreement`` = 100 x the mean cosine between the
        artifact's and Keras' embedding of each image, the lowest such cosine, and the max abs difference."""
        cosines = row_cosines(outputs, reference) if len(outputs) else np.ones(1)
        return {
            "accuracy": self.score(outputs, truth),
            "agreement": 100.0 * float(np.mean(cosines)),
            "mean_cosine": float(np.mean(cosines)),
            "min_cosine": float(np.min(cosines)),
            "max_abs_diff": float(np.max(np.abs(outputs - reference))) if outputs.size else 0.0,
        }

    def summary(self, split_metrics: dict[str, Any]) -> dict[str, Any]:
        return {"images": split_metrics["images"], "people": split_metrics["people"],
                "pairs": split_metrics["pairs"], "verification acc": split_metrics["accuracy"],
                "AUC": split_metrics["auc"]}


register_task(Embed())
