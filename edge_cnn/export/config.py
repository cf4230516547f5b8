"""``ExportConfig``: every export setting in one object, the defaults defined once.

Its fields are ``edgecnn export``'s flags and a recipe's keys (the CLI reads its defaults from
here), and ``edge_cnn.export.export(source, config)`` takes it; ``validate`` refuses impossible
combinations before any model is loaded, naming the flag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

from edge_cnn.errors import EdgeCNNError
from edge_cnn.export.onnx_quant import OnnxQuantOptions
from edge_cnn.formats import format_names, get_format

DEFAULT_FINE_TUNE_EPOCHS = 2
MIN_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear


@dataclasses.dataclass
class ExportConfig:
    """What to export and how. ``format`` is a comma list or a sequence of format names."""

    out: str | os.PathLike | None = None  # default: SOURCE/export
    format: Sequence[str] | str = "tflite,onnx"
    int8: bool = False
    fp16: bool = False
    dynamic_range: bool = False  # --dynamic-range (the old --dynamic still works, with a warning)
    float_io: bool = False
    calib: int = 200
    calib_method: str = "minmax"
    calib_data: str | os.PathLike | None = None
    onnx_format: str = "qdq"
    onnx_activations: str = "u8"
    onnx_per_channel: bool = True
    onnx_reduce_range: bool = True
    onnx_float_ops: Sequence[str] | str = ""  # comma list: op types the ONNX int8 graph keeps in float
    opset: int = 17
    keep_names: bool = False
    qat: bool = False
    qat_epochs: int = DEFAULT_FINE_TUNE_EPOCHS
    prune: float | None = None
    prune_epochs: int = DEFAULT_FINE_TUNE_EPOCHS  # also the fine-tuning of prune_channels and target_latency
    prune_channels: float | str | dict[str, int] | None = None  # a fraction, or LAYER=CHANNELS_KEPT items
    target_latency: float | None = None  # ms of fp32 TFLite on this CPU, 1 thread: NetAdapt channel pruning
    distill: bool = False  # channel pruning's fine-tune learns the unpruned model's softened outputs too
    prune_lr: float | None = None  # channel pruning's fine-tune: cosine decay from this rate (None: constant 1e-4)
    cluster: int | None = None
    cluster_epochs: int = DEFAULT_FINE_TUNE_EPOCHS
    preprocess: str | os.PathLike | None = None
    labels: str | os.PathLike | None = None
    embedding: bool = False

    @property
    def formats(self) -> list[str]:
        """The requested format names (unknown ones are refused by ``validate``)."""
        return _names(self.format)

    @property
    def channel_plan(self) -> float | dict[str, int] | None:
        """``prune_channels`` parsed: a fraction of every convolution, or the channels kept per named one."""
        return None if self.prune_channels is None else channel_plan(self.prune_channels)

    @property
    def optimizing(self) -> bool:
        chosen = (self.prune, self.prune_channels, self.target_latency, self.cluster)
        return self.qat or any(value is not None for value in chosen)

    def onnx_options(self) -> OnnxQuantOptions:
        return OnnxQuantOptions(
            format=self.onnx_format,
            calib_method=self.calib_method,
            per_channel=self.onnx_per_channel,
            reduce_range=self.onnx_reduce_range,
            activation_type=self.onnx_activations,
            float_ops=tuple(_names(self.onnx_float_ops)),
        ).check()

    def validate(self) -> "ExportConfig":
        """Refuse what cannot be exported, before any work."""
        formats = self.formats
        unknown = [f for f in formats if f not in format_names()]
        if unknown or not formats:
            raise EdgeCNNError(
                f"format {', '.join(unknown) or '(none)'} is unknown: use a comma list of {', '.join(format_names())}"
            )
        if _names(self.onnx_float_ops) and (self.qat or not self.int8 or "onnx" not in formats):
            raise EdgeCNNError("--onnx-float-ops shapes the post-training ONNX int8 model: use it with --int8 and the "
                               "onnx format, without --qat")
        self.onnx_options()
        _check_options(formats, self.calib, self.opset, self.qat, self.prune, self.prune_channels, self.target_latency,
                       self.cluster, self.fp16, self.dynamic_range)
        if (self.distill or self.prune_lr is not None) and self.prune_channels is None and self.target_latency is None:
            raise EdgeCNNError("--distill and --prune-lr shape the fine-tune of a channel-pruned model: use them with "
                               "--prune-channels or --target-latency")
        if self.prune_lr is not None and not float(self.prune_lr) > 0.0:
            raise EdgeCNNError(f"--prune-lr {self.prune_lr} must be a learning rate above 0 (e.g. 1e-3)")
        return self


def channel_plan(value: float | str | dict[str, int]) -> float | dict[str, int]:
    """``--prune-channels``' two forms -> a fraction of every prunable convolution (``0.5``), or the channels
    each named convolution keeps (``stage1_conv=8,stage2_conv=16``, or that dict); checked, names not yet
    (they belong to a model: ``keep_channels`` checks them)."""
    if isinstance(value, dict) or (isinstance(value, str) and "=" in value):
        pairs = value.items() if isinstance(value, dict) else (item.partition("=")[::2] for item in value.split(","))
        plan = {}
        for name, count in pairs:
            name, count = str(name).strip(), str(count).strip()
            if not name or not count.isdigit() or int(count) < 1:
                raise EdgeCNNError(f"--prune-channels {value}: each item is LAYER=CHANNELS_KEPT with at least 1 "
                                   "channel (e.g. stage1_conv=8,stage2_conv=16)")
            plan[name] = int(count)
        return plan
    try:
        fraction = float(value)
    except ValueError:
        raise EdgeCNNError(f"--prune-channels {value} is neither a fraction (e.g. 0.5) nor LAYER=CHANNELS_KEPT "
                           "items (e.g. stage1_conv=8,stage2_conv=16)") from None
    if not 0.0 < fraction < 1.0:
        raise EdgeCNNError(f"--prune-channels {value} must be a fraction between 0 and 1 (e.g. 0.5)")
    return fraction


MAX_PLAN_LABEL = 40  # characters of a channel plan in a file name, far below file systems' 255


def channel_plan_label(plan: float | dict[str, int]) -> str:
    """A channel plan as a short file-name part: the percent of channels removed (``50``), the channels
    kept per layer in order (``8-16-48``) or, beyond ``MAX_PLAN_LABEL`` characters (a plan for each of
    MobileNetV2's 19 prunable layers), the layer count and a hash of the plan (``19layers-3fa2c1d0``):
    the manifest lists every layer's count."""
    if not isinstance(plan, dict):
        return str(round(100 * plan))
    label = "-".join(str(count) for count in plan.values())
    if len(label) <= MAX_PLAN_LABEL:
        return label
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:8]
    return f"{len(plan)}layers-{digest}"


def _names(value: Sequence[str] | str) -> list[str]:
    """A comma list or a sequence of names -> the names, blanks dropped."""
    text = value.split(",") if isinstance(value, str) else value
    return [name.strip() for name in text if name.strip()]


def _check_options(
    formats, calib, opset, qat, prune, prune_channels, target_latency, cluster, fp16, dynamic_range
) -> None:
    import onnx

    for flag, precision, asked in (("--fp16", "fp16", fp16), ("--dynamic-range", "dynamic", dynamic_range)):
        writers = [name for name in format_names() if precision in get_format(name).precisions]
        if asked and not set(writers) & set(formats):
            raise EdgeCNNError(f"{flag} is a precision of {', '.join(writers)} only: add one to --format")
    if sum([qat, *(value is not None for value in (prune, prune_channels, target_latency, cluster))]) > 1:
        raise EdgeCNNError(
            "--qat, --prune, --prune-channels, --target-latency and --cluster are exclusive: export one optimization "
            "per output folder"
        )
    if qat and (fp16 or dynamic_range):
        raise EdgeCNNError("--qat produces int8 artifacts: drop --fp16/--dynamic-range")
    if prune is not None and not 0.0 < float(prune) < 1.0:
        raise EdgeCNNError(f"--prune {prune} must be a sparsity between 0 and 1 (e.g. 0.5)")
    if prune_channels is not None:
        channel_plan(prune_channels)
    if target_latency is not None and not float(target_latency) > 0.0:
        raise EdgeCNNError(f"--target-latency {target_latency} must be a latency above 0 milliseconds (e.g. 5)")
    if cluster is not None and int(cluster) < 2:
        raise EdgeCNNError(f"--cluster {cluster} must be at least 2 clusters (e.g. 16)")
    if int(calib) < 1:
        raise EdgeCNNError(f"--calib {calib} must be at least 1 image")
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise EdgeCNNError(f"--opset {opset} is outside {MIN_OPSET}..{onnx.defs.onnx_opset_version()}")
