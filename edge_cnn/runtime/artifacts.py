"""Which model file the runtime runs, why, and whether it is the one the manifest describes.

From an export folder, without ``--precision``: the artifact and thread count that
``edgecnn bench EXPORT --select`` measured fastest on a CPU of this fingerprint
(``selection.json``), else a rule measured on both CPU kinds: int8 where the CPU has an int8 dot
product (VNNI, AVX-VNNI, AMX, Arm's SDOT); where it has none, ONNX int8 for a model of at least
``ONNX_INT8_WITHOUT_DOT_PRODUCT_MACS`` whose int8 graph runs no node in float between int8 layers
(onnxruntime's int8 convolutions still beat fp32 there on such models: ResNet-18-224 1.65x, a 41M-MAC
ConvNet 1.42x on an AVX2 CPU, while LiteRT's int8 was no faster than its fp32), and fp32 otherwise: a
smaller model (the 5.6M-MAC pedestrian classifier ran int8 1.37x slower: quantizing and dequantizing cost
more than the int8 arithmetic saves) or one whose int8 graph converts back and forth in the middle
(MobileFaceNet-112's PReLUs, 221M MACs, ran int8 1.57x slower). The manifest is the contract: labels,
preprocessing, tensor shapes, quantization and a sha256 per artifact; a model file that differs from it is
refused before it is run, because its outputs would be silently wrong.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from edge_cnn.errors import EdgeCNNError, ManifestError, ModelFileError
from edge_cnn.formats import embedded_formats, format_of_file, get_format
from edge_cnn.manifest import MANIFEST_NAME, Artifact, Manifest, load_manifest

# The rule's order of precisions on a CPU provider: with an int8 dot product, and without one.
PRECISIONS_BY_CPU = {True: ("int8", "fp32"), False: ("fp32", "int8")}
# From this many multiply-accumulates per forward pass (the manifest's ``macs``) the rule runs ONNX int8 on a
# CPU without an int8 dot product, if its graph has no float node between int8 layers (the artifact's
# ``optimization.float_nodes`` is 0). Measured on an AVX2 one (README, "Deployment choice on a CPU without
# VNNI"), ONNX int8 / best fp32 file: 5.6M MACs 1.56, 15.7M 1.19 (slower); 41M-1.8G 0.61-0.87 (faster), except
# MobileFaceNet-112 (221M MACs, 33 float Neg nodes of its PReLUs) 1.57. The threshold lies between 15.7M and
# 41M, the nearest measured sizes on either side (their geometric mean, rounded).
ONNX_INT8_WITHOUT_DOT_PRODUCT_MACS = 25_000_000
# Where the rule keeps fp32 on such a CPU it runs LiteRT's fp32 file: on the AVX2 CPU LiteRT fp32 beat
# onnxruntime fp32 on 10 of 14 models (one tie), on every one the rule keeps in fp32 (pedestrian 0.153 against
# 0.184 ms, MobileFaceNet-64 2.02 against 3.56 ms); onnxruntime's won the other three by 7-10%. The export's parity
# timing decided before: measured on the export machine, 20 calls, it put ONNX fp32 first in one of two
# pedestrian exports on the same machine, 1.20x off the fastest file.
FP32_WITHOUT_DOT_PRODUCT = "tflite"


@dataclasses.dataclass(frozen=True)
class Pick:
    """An artifact to run, the thread count to run it with (None: the runtime's default), and why."""

    manifest: Manifest
    artifact: Artifact
    threads: int | None
    reason: str


# Keys of an artifact's parity dict holding its measured median latency, first match wins.
LATENCY_KEYS = ("latency_p50_ms", "latency_ms", "p50_ms")


def resolve(path: str | Path, backend: str = "auto", precision: str | None = None, provider: str = "cpu",
            threads: int | None = None, cpu: dict[str, Any] | None = None) -> Pick:
    """An export folder (or run folder with export/), manifest.json, or model file -> what to run and why.

    ``cpu`` (``machine.cpu_info()``'s dict) is the CPU the choice is for: this one by default."""
    path = Path(path)
    if path.is_dir() or path.name == MANIFEST_NAME:
        if path.is_dir():
            has_export = not (path / MANIFEST_NAME).is_file() and (path / "export" / MANIFEST_NAME).is_file()
            path = path / "export" if has_export else path
        manifest = load_manifest(path)
        return choose(manifest, backend, precision, provider, threads, cpu)
    if not path.exists():
        raise ModelFileError(f"model {path} does not exist: pass an export folder (with manifest.json) or a model file in it")
    fmt = format_of_file(path)
    if fmt is None or not fmt.embedded:
        suffixes = ", ".join(get_format(name).suffix for name in embedded_formats())
        raise ModelFileError(f"{path} is none of {suffixes}: pass a model file or its export folder")
    if not (path.parent / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"model {path} has no {MANIFEST_NAME} beside it: the runtime needs the manifest written by "
            "`edgecnn export` (labels, preprocessing, quantization); keep the export folder together"
        )
    manifest = load_manifest(path.parent)
    artifact = _listed(manifest, path)
    if precision is not None and artifact.precision != precision:
        raise EdgeCNNError(f"{path.name} is the {artifact.precision} artifact, not {precision}: pass the export folder to pick by precision")
    return Pick(manifest, artifact, threads, "the file given")


def choose(manifest: Manifest, backend: str = "auto", precision: str | None = None, provider: str = "cpu",
           threads: int | None = None, cpu: dict[str, Any] | None = None) -> Pick:
    """The artifact of an export folder to run on this device (see the module's docstring)."""
    from edge_cnn.machine import cpu_fingerprint, cpu_info, int8_accelerated
    from edge_cnn.selection import lookup

    if precision is not None or provider != "cpu":
        wanted = f"--precision {precision}" if precision else f"provider {provider}"
        return Pick(manifest, select(manifest, backend, precision, provider), threads, f"{wanted}, fastest that passed parity")
    cpu = cpu or cpu_info()
    fingerprint = cpu_fingerprint(cpu)
    measured = lookup(manifest.root, fingerprint) if manifest.root else None
    if measured is not None:
        listed = {artifact.path: artifact for artifact in manifest.artifacts}.get(measured.artifact)
        if listed is not None and listed.status == "OK" and (backend == "auto" or listed.format == backend):
            return Pick(manifest, listed, threads or measured.threads,
                        f"fastest measured on this CPU by `edgecnn bench --select` ({measured.p50_ms:.3g} ms)")
    dot_product = int8_accelerated(cpu)
    measure = "`edgecnn bench EXPORT --select` measures the choice"
    if dot_product:
        artifact = select(manifest, backend, None, provider, PRECISIONS_BY_CPU[True])
        return Pick(manifest, artifact, threads, f"this CPU has an int8 dot product (VNNI/AMX/SDOT); {measure}")
    large = manifest.macs is not None and manifest.macs >= ONNX_INT8_WITHOUT_DOT_PRODUCT_MACS
    onnx_int8 = [a for a in manifest.artifacts if a.format == "onnx" and a.precision == "int8" and a.status == "OK"]
    whole = [a for a in onnx_int8 if a.optimization.get("float_nodes") == 0]
    if large and whole and backend in ("auto", "onnx"):
        return Pick(manifest, _fastest(whole), threads,
                    f"this CPU has no int8 dot product, but the model is large ({manifest.macs / 1e6:.0f}M MACs) and its "
                    f"ONNX int8 graph is int8 throughout, where onnxruntime's int8 measured faster than fp32; {measure}")
    litert_fp32 = [a for a in manifest.artifacts
                   if a.format == FP32_WITHOUT_DOT_PRODUCT and a.precision == "fp32" and a.status == "OK"]
    if litert_fp32 and backend in ("auto", FP32_WITHOUT_DOT_PRODUCT):
        artifact = litert_fp32[0]  # not by the export machine's timing: see FP32_WITHOUT_DOT_PRODUCT
    else:
        artifact = select(manifest, backend, None, provider, PRECISIONS_BY_CPU[False])
    return Pick(manifest, artifact, threads,
                f"this CPU has no int8 dot product, so int8 would be slower on this model ({_why_not_int8(manifest, large, onnx_int8)}); "
                f"{measure}")


def _why_not_int8(manifest: Manifest, large: bool, onnx_int8: list[Artifact]) -> str:
    """The rule's reason for fp32 on a CPU without an int8 dot product, in a few words."""
    if manifest.macs is None:
        return "size not in the manifest"
    size = f"{manifest.macs / 1e6:.3g}M MACs"
    if not large:
        return size
    if not onnx_int8:
        return f"{size}; LiteRT's int8 measured no faster there, and no ONNX int8 artifact passed parity"
    counts = [a.optimization.get("float_nodes") for a in onnx_int8]
    if any(count is None for count in counts):
        return f"{size}; the ONNX int8 graph's float nodes are not in the manifest: re-export"
    return f"{size}, but its ONNX int8 graph runs {min(counts)} nodes in float between int8 layers"


def _listed(manifest: Manifest, path: Path) -> Artifact:
    for artifact in manifest.artifacts:
        if manifest.artifact_path(artifact).resolve() == path.resolve():
            return artifact
    raise ManifestError(f"model {path} is not listed in {path.parent / MANIFEST_NAME}: re-export, or pass the export folder")


def latency_ms(artifact: Artifact) -> float:
    """The artifact's measured median latency from its parity record; infinity when not measured."""
    for key in LATENCY_KEYS:
        value = artifact.parity.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
            return float(value)
    return math.inf


def select(manifest: Manifest, backend: str = "auto", precision: str | None = None, provider: str = "cpu",
           order: tuple[str, ...] = PRECISIONS_BY_CPU[True]) -> Artifact:
    """Default: the fastest artifact whose parity status is OK of the first precision of ``order`` that
    has one (int8, else fp32).

    An explicit ``precision`` takes the fastest artifact of it that did not FAIL parity (OK before
    WARN). Only formats whose runtime has ``provider`` are candidates (LiteRT runs on the CPU only,
    so a GPU provider restricts the choice to ONNX).
    """
    where = manifest.root / MANIFEST_NAME if manifest.root else MANIFEST_NAME
    embedded = embedded_formats()
    if backend not in ("auto", *embedded):
        raise EdgeCNNError(f"backend {backend!r} is unknown: use auto, {', '.join(embedded)}")
    on_provider = [name for name in embedded if provider in get_format(name).providers]
    if backend != "auto" and backend not in on_provider:
        raise EdgeCNNError(
            f"{backend} ({get_format(backend).runtime}) runs on the {'/'.join(get_format(backend).providers).upper()} only; "
            f"provider {provider!r} needs --backend {' or '.join(on_provider) or 'another runtime'}"
        )
    formats = tuple(on_provider) if backend == "auto" else (backend,)
    candidates = [a for a in manifest.artifacts if a.format in formats and (precision is None or a.precision == precision)]
    wanted = " ".join(part for part in (precision, "/".join(formats)) if part)
    if not candidates:
        present = ", ".join(f"{a.format} {a.precision}" for a in manifest.artifacts) or "none"
        raise ManifestError(f"{where} lists no {wanted} model (it has: {present}): choose another --precision/--backend or re-export")
    usable = [a for a in candidates if a.status != "FAILED"]
    if not usable:
        raise ManifestError(f"every {wanted} model in {where} FAILED its parity check: choose another --precision or re-export")
    if precision is None:
        for default in order:
            passed = [a for a in usable if a.precision == default and a.status == "OK"]
            if passed:
                return _fastest(passed)
        usable = [a for a in usable if a.status == "OK"] or usable
    return _fastest(sorted(usable, key=lambda a: a.status != "OK"))


def _fastest(artifacts: list[Artifact]) -> Artifact:
    """Lowest measured latency; unmeasured ones keep the manifest's order after the measured."""
    return min(enumerate(artifacts), key=lambda pair: (latency_ms(pair[1]), pair[0]))[1]
