"""What the numbers were measured on: CPU, instruction sets, GPU and library versions.

A latency without its machine is meaningless (int8 is fast only with VNNI/AMX, say), so
every bench report carries this. TensorFlow's version is read from package metadata,
without importing it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

# /proc/cpuinfo flag -> the name users know it by
CPU_FLAGS = {
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "amx_tile": "amx",
    "asimddp": "asimddp",  # Arm's int8 dot product (SDOT/UDOT)
}
# Instructions that make int8 convolutions faster than float32 ones: without any of them (an AVX2-only
# x86 CPU, say) int8 models measured slower than fp32 here (README, "int8 that pays").
INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "amx", "asimddp")
PACKAGES = {
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "ai-edge-litert": ("ai-edge-litert",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "numpy": ("numpy",),
}


def machine_info() -> dict[str, Any]:
    cpu = cpu_info()
    return {
        "cpu": cpu["model"],
        "cores": os.cpu_count(),
        "cpu_flags": cpu["flags"],
        "platform": platform.platform(),
        "gpu": gpu_info(),
        "python": platform.python_version(),
        **{name: package_version(*dists) for name, dists in PACKAGES.items()},
    }


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU model name and the instruction sets that matter for (int8) inference."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"model": model, "flags": [name for flag, name in CPU_FLAGS.items() if flag in flags]}


def cpu_fingerprint(info: dict[str, Any] | None = None) -> str:
    """What a latency measurement holds for: the CPU's name and its inference-relevant flags."""
    info = info or cpu_info()
    return f"{info['model']} [{' '.join(sorted(info['flags']))}]"


def int8_accelerated(info: dict[str, Any] | None = None) -> bool:
    """The CPU has an int8 dot-product instruction (VNNI, AVX-VNNI, AMX or Arm's dot product)."""
    info = info or cpu_info()
    return any(flag in info["flags"] for flag in INT8_DOT_PRODUCT)


def package_version(*distributions: str) -> str | None:
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def nvidia_smi(*query: str) -> list[list[str]] | None:
    """Rows of an ``nvidia-smi`` CSV query, or None where there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def gpu_info() -> list[dict[str, str]]:
    rows = nvidia_smi("--query-gpu=name,driver_version,memory.total") or []
    return [{"name": r[0], "driver": r[1], "memory_mb": r[2]} for r in rows if len(r) >= 3]


def gpu_memory_mb(pid: int | None = None) -> float | None:
    """GPU memory this process holds (nvidia-smi's per-process figure), None without a driver."""
    rows = nvidia_smi("--query-compute-apps=pid,used_memory")
    if rows is None:
        return None
    pid = os.getpid() if pid is None else pid
    used = [float(r[1]) for r in rows if len(r) >= 2 and r[0] == str(pid) and r[1].replace(".", "").isdigit()]
    return sum(used) if used else 0.0
