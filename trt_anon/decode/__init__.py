"""Decode stage: a video file in, batches of RGB uint8 frames (with their timestamps) out."""
from __future__ import annotations

from pathlib import Path

from ..errors import BackendError
from .batch import Batch
from .pyav import PyAVDecoder

__all__ = ["Batch", "PyAVDecoder", "select_gpu_decoder"]


def select_gpu_decoder(path: Path, batch_size: int, time_base):
    """DALI, else PyNvVideoCodec; BackendError naming both reasons if neither runs."""
    reasons = []
    for mod, cls in (("dali", "DaliDecoder"), ("nvdec", "NvDecoder")):
        try:
            module = __import__(f"{__name__}.{mod}", fromlist=[cls])
            return getattr(module, cls)(path, batch_size, time_base)
        except BackendError as exc:
            reasons.append(str(exc))
    raise BackendError("no GPU decoder runs here: " + " / ".join(reasons))
