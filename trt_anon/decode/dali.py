"""GPU decoder: DALI's video reader on NVDEC, ``batch_size``-frame sequences straight to GPU memory.

DALI drops a trailing partial sequence unless told otherwise; ``pad_mode="constant"`` pads it, and
``enable_frame_num="sequence"`` numbers every frame, -1 for padding. We keep exactly the frames
numbered ``start, start+1, ...`` and refuse anything else, so the output has the input's frames
(lengths 1, 31, 33, 70 in tests). Timestamps come from the container.

Colour: DALI's GPU reader converts to RGB with BT.601 whatever the stream (its color_space.cu),
so HD video (BT.709) would come out shifted and re-encode wrong. We ask it for YCbCr instead (the
stream's codes, chroma upsampled) and convert with the stream's own matrix and range
(``gpu_color.ycc_to_rgb``), the exact inverse of what the GPU encoder does. That conversion also
writes the batch into our own array; DALI's output is kept until the kernel that reads it is done.

Buffers: with DALI's default (dynamic) executor, ``run()`` without a stream returns outputs that
are host-synchronous and are not recycled while referenced (Pipeline.release_outputs' note), so
the batch needs no copy and no extra synchronisation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..encode.gpu_color import ycc_to_rgb
from ..errors import BackendError, InputError
from .batch import Batch
from .timestamps import check_exhausted, presentation_pts, take


def real_frames(numbers: np.ndarray, start: int, path: Path) -> int:
    """How many frames of a DALI sequence are real: its frame numbers must be ``start, start+1, ...``
    followed only by padding (-1). A skipped or repeated frame is an error, never a silent gap."""
    n = int((numbers >= 0).sum())
    if not np.array_equal(numbers[:n], np.arange(start, start + n)) or (numbers[n:] >= 0).any():
        raise InputError(f"{path}: DALI returned frames {numbers.tolist()} where {start}.. was due "
                         "(damaged file?); use --backend cpu")
    return n


class DaliDecoder:
    name = "dali"

    def __init__(self, path: Path, batch_size: int, time_base, device: str = "gpu",
                 colorspace: tuple[int, int] | None = None) -> None:
        """``device="cpu"`` runs DALI's CPU reader (VP8/VP9/MJPEG only) into NumPy: it lets this class
        be tested without a GPU; the product uses ``"gpu"`` (NVDEC: H.264, HEVC, AV1, ...). The CPU
        reader cannot give YCbCr (its libswscale call fails), so it gives BT.601 RGB.
        ``colorspace``: the stream's (AVColorSpace, AVColorRange), for the YCbCr -> RGB conversion."""
        try:
            from nvidia.dali import fn, pipeline_def, types
            if device == "gpu":
                import cupy as xp
            else:
                xp = np
        except ImportError as exc:
            raise BackendError(f"DALI is not installed ({exc}); pip install '.[gpu]'") from None
        self.xp, self.path, self.batch_size, self.time_base = xp, Path(path), batch_size, time_base
        self.colorspace = colorspace or (2, 0)
        self.errors = 0

        @pipeline_def(batch_size=1, num_threads=2, device_id=0 if device == "gpu" else None,
                      prefetch_queue_depth=2, exec_dynamic=True)
        def pipe():
            video, numbers = fn.experimental.readers.video(
                device=device, filenames=[str(self.path)], sequence_length=batch_size, pad_mode="constant",
                enable_frame_num="sequence", image_type=types.YCbCr if device == "gpu" else types.RGB,
                name="reader")
            return video, numbers

        try:
            self.pipe = pipe()
            self.pipe.build()
            self.sequences = int(self.pipe.reader_meta("reader")["epoch_size"])
        except RuntimeError as exc:
            raise BackendError(f"DALI cannot read {self.path.name}: {str(exc).splitlines()[0]}") from None

    def __iter__(self) -> Iterator[Batch]:
        pts = presentation_pts(self.path)
        start = 0
        read = None  # (event, DALI output) of the last conversion: DALI may reuse that memory once dropped
        for _ in range(self.sequences):
            video, numbers = self.pipe.run()
            n = real_frames(np.asarray(numbers.as_cpu().as_array()).reshape(-1), start, self.path)
            if n == 0:
                continue
            frames = self.xp.asarray(video.as_tensor())[0, :n]
            if self.xp is not np:
                frames = ycc_to_rgb(frames, *self.colorspace)
                if read is not None:
                    read[0].synchronize()  # long done by now (the detector waited on it): no stall
                read = (self.xp.cuda.get_current_stream().record(), video)
            yield Batch(frames, take(pts, n, self.path, "DALI"), self.time_base, start)
            start += n
        check_exhausted(pts, self.path, "DALI")
