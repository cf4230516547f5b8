"""GPU execution: IO binding for the CUDA/TensorRT providers and TensorRT's options.

With IO binding the inputs are uploaded once, before timing, and outputs are bound to
the device, so a timed call is the model alone (``run_with_iobinding`` synchronises the
device, so the time includes the kernels finishing). ``include_copies`` puts the
host->device input copy and the device->host output copy back into the timed call. The
same code runs with ``device="cpu"``, which is how it is tested on a machine without GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

GPU_PROVIDERS = ("cuda", "tensorrt")


class IOBindingCall:
    """One timed call = ``session.run_with_iobinding`` on a binding prepared per input buffer."""

    def __init__(self, session: Any, device: str = "cuda", device_id: int = 0, include_copies: bool = False):
        self.session = session
        self.device = device
        self.device_id = device_id
        self.include_copies = include_copies
        self.input_name = session.get_inputs()[0].name
        self.output_names = [o.name for o in session.get_outputs()]

    def prepare(self, batch: np.ndarray) -> Any:
        """A binding whose input already sits on the device (or the host array with copies timed)."""
        import onnxruntime as ort

        batch = np.ascontiguousarray(batch)
        if self.include_copies:
            return batch
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(batch, self.device, self.device_id)
        binding.bind_ortvalue_input(self.input_name, value)
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        return binding, value  # the value keeps the device buffer alive as long as the binding

    def __call__(self, prepared: Any) -> Any:
        if not self.include_copies:
            self.session.run_with_iobinding(prepared[0])
            return prepared
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, prepared)
        for name in self.output_names:
            binding.bind_output(name, self.device, self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def fetch(self, prepared: Any) -> list[np.ndarray]:
        """Run once and bring the outputs to the host (untimed; for the finiteness check)."""
        result = self(prepared)
        return result if self.include_copies else prepared[0].copy_outputs_to_cpu()


def tensorrt_options(fp16: bool = False, int8: bool = False, cache: str | Path | None = None) -> dict[str, Any]:
    """TensorRT provider options; an engine cache makes later sessions skip the engine build."""
    options: dict[str, Any] = {}
    if fp16:
        options["trt_fp16_enable"] = True
    if int8:
        options["trt_int8_enable"] = True
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        options["trt_engine_cache_enable"] = True
        options["trt_engine_cache_path"] = str(cache)
    return options


def session_providers(provider: str) -> tuple[str, ...]:
    """Providers for one benchmark configuration: TensorRT gets CUDA behind it for the nodes
    TensorRT does not take (ONNX Runtime's recommended order)."""
    return ("tensorrt", "cuda") if provider == "tensorrt" else (provider,)
