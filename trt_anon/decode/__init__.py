"""Decode stage: a video file in, batches of RGB uint8 frames (with their timestamps) out."""
from __future__ import annotations

from pathlib import Path

from ..errors import BackendError, first_line
from .batch import Batch
from .pyav import PyAVDecoder

__all__ = ["Batch", "PyAVDecoder", "select_gpu_decoder"]


def select_gpu_decoder(path: Path, batch_size: int, time_base, colorspace: tuple[int, int] | None = None):
    """DALI, else PyNvVideoCodec, each proven on the file's first batch; BackendError naming both
    reasons if neither runs.

    ``colorspace`` is the stream's (AVColorSpace, AVColorRange), which the decoders' YCbCr/NV12 is
    converted to RGB with (the same matrix the GPU encoder converts back with).
    """
    reasons = []
    for mod, cls in (("dali", "DaliDecoder"), ("nvdec", "NvDecoder")):
        try:
            module = __import__(f"{__name__}.{mod}", fromlist=[cls])
            return Primed(getattr(module, cls)(path, batch_size, time_base, colorspace=colorspace))
        except Exception as exc:  # untyped errors from the GPU packages are reasons too, never the end of the run
            reasons.append(first_line(exc))
    raise BackendError("no GPU decoder runs here: " + " / ".join(reasons))


class Primed:
    """A GPU decoder whose first batch was decoded when it was chosen.

    NVDEC says what it cannot decode (10-bit or 4:2:2 H.264, sizes past its limits) only once
    decoding starts: DALI raises from its first ``run()``, PyNvVideoCodec from its first batch.
    Decoding that batch during selection turns such a file into a fallback to PyAV, with the
    reason in the report, instead of a failed run; the batch is kept and yielded first.
    """

    def __init__(self, decoder) -> None:
        self.decoder, self.name = decoder, decoder.name
        self._batches = iter(decoder)
        self._first = next(self._batches, None)
        if self._first is None:
            raise BackendError(f"{decoder.name} decoded no frame of this file")

    @property
    def errors(self) -> int:
        return self.decoder.errors

    def __iter__(self):
        first, self._first = self._first, None
        if first is not None:
            yield first
        yield from self._batches
