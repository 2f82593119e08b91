"""Detect stage: a batch of RGB frames in, one ``Detections`` per frame out."""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..errors import BackendError, first_line
from .detections import Detections
from .model import Model

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Detections", "MODELS", "Model", "load_model", "select_detector"]

# The networks, by name: a module of this package each, with ``MODEL`` (model.Model). Every runtime runs any of
# them (``Config.model`` chooses).
MODELS = ("centerface",)


def load_model(name: str) -> Model:
    return import_module(f"{__name__}.{name}").MODEL


# The runtimes, in the order they are tried: a module of this package each, with ``TITLE`` and
# ``make(config, frame_hw)``, which returns a detector running ``load_model(config.model)`` (called with a batch
# of frames as displayed, it returns one Detections per frame; ``name`` says which ran) or raises why it cannot
# run here.
GPU_RUNTIMES = ("tensorrt", "torch_cuda")
CPU_RUNTIMES = ("onnxrt",)


def select_detector(config: "Config", gpu: bool, notes: list[str] | None = None,
                    frame_hw: tuple[int, int] | None = None):
    """The first runtime that runs here (GPU: TensorRT, else PyTorch CUDA FP16; CPU: ONNX Runtime). Why a
    choice was skipped goes in notes.

    ``frame_hw`` (the frames as the detector sees them) has TensorRT build or load its engine now,
    so that a failure falls back to PyTorch here rather than failing the first batch. Any error while
    a GPU detector is made (a missing ``onnx``, a CUDA error from PyTorch, TensorRT's untyped ones)
    is a reason to try the next, never the end of the run; the CPU's own errors are the run's.
    """
    runtimes = [import_module(f"{__name__}.{name}") for name in (GPU_RUNTIMES if gpu else CPU_RUNTIMES)]
    reasons = []
    for runtime in runtimes:
        try:
            detector = runtime.make(config, frame_hw)
        except Exception as exc:
            if not gpu:
                raise
            reasons.append(first_line(exc))
            continue
        if reasons and notes is not None:
            notes.append(f"detect: {runtime.TITLE}, not {runtimes[0].TITLE} ({reasons[0]})")
        return detector
    raise BackendError("no GPU detector runs here: " + " / ".join(reasons))
