"""Decode stage: a video file in, batches of RGB uint8 frames (with their timestamps) out."""
from __future__ import annotations

from pathlib import Path

from ..errors import BackendError
from .batch import Batch
from .pyav import PyAVDecoder

__all__ = ["Batch", "PyAVDecoder", "select_gpu_decoder"]


def select_gpu_decoder(path: Path, batch_size: int, time_base, colorspace: tuple[int, int] | None = None):
    """DALI, else PyNvVideoCodec; BackendError naming both reasons if neither runs.

    ``colorspace`` is the stream's (AVColorSpace, AVColorRange), which DALI's YCbCr output is
    converted to RGB with (the same matrix the GPU encoder converts back with).
    """
    reasons = []
    for mod, cls, extra in (("dali", "DaliDecoder", {"colorspace": colorspace}), ("nvdec", "NvDecoder", {})):
        try:
            module = __import__(f"{__name__}.{mod}", fromlist=[cls])
            return getattr(module, cls)(path, batch_size, time_base, **extra)
        except BackendError as exc:
            reasons.append(str(exc))
    raise BackendError("no GPU decoder runs here: " + " / ".join(reasons))
