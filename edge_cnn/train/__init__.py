"""Training: a zoo backbone + new head, two-stage transfer learning, a run directory.

``TrainConfig`` (every setting, named like its ``edgecnn train`` flag) and
``train(config) -> RunResult``. TensorFlow loads only when ``train`` is first used,
so ``edgecnn train --help`` and config validation stay fast.
"""

from edge_cnn.train.config import TrainConfig

__all__ = ["RunResult", "TrainConfig", "evaluate_run", "train"]


def __getattr__(name: str):
    if name in ("train", "RunResult"):
        from edge_cnn.train import trainer

        return getattr(trainer, name)
    if name == "evaluate_run":
        from edge_cnn.train.evaluate import evaluate_run

        return evaluate_run
    raise AttributeError(f"module 'edge_cnn.train' has no attribute {name!r}")
