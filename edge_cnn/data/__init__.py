"""Data: ImageFolder scanning, splits, embedded data sets, augmentation and the tf.data pipeline.

Everything but ``make_dataset`` is TensorFlow-free; ``make_dataset`` is imported on first use so
that scanning or splitting a folder does not load TensorFlow.
"""

from edge_cnn.data.augment import AugmentConfig
from edge_cnn.data.embedded import EMBEDDED_DATASETS, resolve_data
from edge_cnn.data.folder import ScanResult, scan_folder
from edge_cnn.data.report import data_report, write_data_report
from edge_cnn.data.splits import SPLITS, group_key, grouped_folds, split_items

__all__ = [
    "AugmentConfig",
    "EMBEDDED_DATASETS",
    "SPLITS",
    "ScanResult",
    "data_report",
    "group_key",
    "grouped_folds",
    "make_dataset",
    "resolve_data",
    "scan_folder",
    "split_items",
    "write_data_report",
]


def __getattr__(name: str):
    if name == "make_dataset":
        from edge_cnn.data.pipeline import make_dataset

        return make_dataset
    raise AttributeError(f"module 'edge_cnn.data' has no attribute {name!r}")
