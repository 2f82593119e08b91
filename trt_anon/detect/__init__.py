"""Detect stage: a batch of RGB frames in, one ``Detections`` per frame out."""
from __future__ import annotations

from ..config import Config
from ..errors import BackendError
from .detections import Detections

__all__ = ["Detections", "select_detector"]


def select_detector(config: Config):
    """The first detector that runs here, in DESIGN.md's order; a named one that cannot run is an error."""
    if config.backend == "gpu":
        raise BackendError("backend 'gpu' is not available on this machine (no CUDA GPU or GPU packages)")
    from .onnxrt import OnnxRuntimeDetector
    return OnnxRuntimeDetector(config.det_size, config.threshold)
