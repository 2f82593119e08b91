"""GPU decoder: PyNvVideoCodec on NVDEC (the alternative when DALI is absent).

``ThreadedDecoder`` (PyNvVideoCodec 2.x) decodes in a thread of its own, a buffer ahead of us; where a
version lacks it (or it cannot open the file), ``SimpleDecoder``. Each batch asks for exactly as many frames
as the container still lists (its timestamps, read ahead by one batch): asking past the end is what made the
decoder log ``INVALID INDEX`` for every missing frame. A returned frame lives in the decoder's own surfaces
until the next request, so it is copied out (and converted) before we ask again.

Frames come in NVDEC's native NV12 and are converted to RGB here (``gpu_color.nv12_to_rgb``) with
the stream's own matrix and range: PyNvVideoCodec's RGB output takes untagged video as BT.709 and
every stream as limited range, while the encoder converts back with the stream's tags (BT.601
when untagged, as libswscale). Decoding, the copy out of the decoder's surfaces and the conversion
run in order on one CuPy stream of our own, handed to the decoder as its ``cuda_stream``;
the caller's stream then waits for it on the GPU, with no host wait.
"""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Iterator

from ..encode.gpu_color import nv12_to_rgb
from ..errors import BackendError, InputError, first_line
from .batch import Batch
from .timestamps import presentation_pts


class NvDecoder:
    name = "pynvvideocodec"

    def __init__(self, path: Path, batch_size: int, time_base, colorspace: tuple[int, int] | None = None) -> None:
        """``colorspace``: the stream's (AVColorSpace, AVColorRange), for the NV12 -> RGB conversion."""
        try:
            import cupy
            import PyNvVideoCodec as nvc
        except ImportError as exc:
            raise BackendError(f"PyNvVideoCodec is not installed ({exc}); pip install '.[gpu]'") from None
        except RuntimeError as exc:  # its import checks the driver: no libnvidia-encode/nvcuvid here
            raise BackendError(f"PyNvVideoCodec cannot load the driver's video libraries ({first_line(exc)}); "
                               "in Docker, NVIDIA_DRIVER_CAPABILITIES needs 'video'") from None
        self.cp, self.path, self.batch_size, self.time_base = cupy, Path(path), batch_size, time_base
        self.colorspace = colorspace or (2, 0)
        self.errors = 0
        self.stream = cupy.cuda.Stream(non_blocking=True)
        opts = dict(gpu_id=0, cuda_stream=self.stream.ptr, use_device_memory=True,
                    output_color_type=nvc.OutputColorType.NATIVE)
        makers = [lambda: nvc.SimpleDecoder(str(self.path), **opts)]
        if hasattr(nvc, "ThreadedDecoder"):
            makers.insert(0, lambda: nvc.ThreadedDecoder(str(self.path), buffer_size=2 * batch_size, **opts))
        for make in makers:
            try:  # its errors are untyped; the next maker is tried
                self.decoder = make()
                break
            except Exception as exc:
                why = first_line(exc)
        else:
            raise BackendError(f"PyNvVideoCodec cannot decode {self.path.name}: {why}") from None

    def __iter__(self) -> Iterator[Batch]:
        cp = self.cp
        pts = presentation_pts(self.path)
        start, copied = 0, None
        try:
            while True:
                want = list(islice(pts, self.batch_size))  # the container's next timestamps: never ask past them
                if not want:
                    break
                if copied is not None:
                    copied.synchronize()  # the last batch is out of the decoder's surfaces (long since, by now)
                frames = self.decoder.get_batch_frames(len(want))
                if len(frames) != len(want):
                    raise InputError(f"{self.path}: NVDEC decoded {start + len(frames)} frames where the container "
                                     f"lists at least {start + len(want)} (damaged file?); use --backend cpu")
                with self.stream:  # DLPack consumer = the decoder's stream: no synchronisation asked for
                    nv12 = cp.stack([cp.from_dlpack(f) for f in frames])  # (N, H * 3 / 2, W), out of its surfaces
                    batch = nv12_to_rgb(nv12, *self.colorspace)
                    copied = self.stream.record()
                cp.cuda.get_current_stream().wait_event(copied)  # the stages after us run on the caller's stream
                yield Batch(batch, want, self.time_base, start)
                start += len(want)
        finally:
            end = getattr(self.decoder, "end", None)  # ThreadedDecoder: stop its thread
            if end is not None:
                end()
