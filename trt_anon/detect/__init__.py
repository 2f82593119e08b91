"""Detect stage: a batch of RGB frames in, one ``Detections`` per frame out."""
from __future__ import annotations

from ..config import Config
from ..errors import BackendError, first_line
from .detections import Detections

__all__ = ["Detections", "select_detector"]


def select_detector(config: Config, gpu: bool, notes: list[str] | None = None,
                    frame_hw: tuple[int, int] | None = None):
    """GPU: TensorRT, else PyTorch CUDA FP16. CPU: ONNX Runtime. Why a choice was skipped goes in notes.

    ``frame_hw`` (the frames as the detector sees them) has TensorRT build or load its engine now,
    so that a failure falls back to PyTorch here rather than failing the first batch. Any error while
    a GPU detector is made (a missing ``onnx``, a CUDA error from PyTorch, TensorRT's untyped ones)
    is a reason to try the next, never the end of the run.
    """
    if gpu:
        reasons = []
        try:
            from .tensorrt import TensorRTDetector
            return TensorRTDetector(config.det_size_for(gpu=True), config.threshold_for("fp32"), config.engine_path,
                                    frame_hw=frame_hw)
        except Exception as exc:
            reasons.append(first_line(exc))
        try:
            from .torch_cuda import TorchCudaDetector
            det = TorchCudaDetector(config.det_size_for(gpu=True), config.threshold_for("fp32"))
            if notes is not None:
                notes.append(f"detect: PyTorch CUDA FP16, not TensorRT ({reasons[0]})")
            return det
        except Exception as exc:
            reasons.append(first_line(exc))
        raise BackendError("no GPU detector runs here: " + " / ".join(reasons))
    from .onnxrt import OnnxRuntimeDetector
    return OnnxRuntimeDetector(config.det_size, config.threshold_for(config.cpu_precision),
                               precision=config.cpu_precision)
