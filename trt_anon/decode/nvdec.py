"""GPU decoder: PyNvVideoCodec on NVDEC (the alternative when DALI is absent)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import BackendError
from .batch import Batch
from .timestamps import check_exhausted, presentation_pts, take


class NvDecoder:
    name = "pynvvideocodec"

    def __init__(self, path: Path, batch_size: int, time_base) -> None:
        try:
            import cupy
            import PyNvVideoCodec as nvc
        except ImportError as exc:
            raise BackendError(f"PyNvVideoCodec is not installed ({exc}); pip install '.[gpu]'") from None
        except RuntimeError as exc:  # its import checks the driver: no libnvidia-encode/nvcuvid here
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"PyNvVideoCodec cannot load the driver's video libraries ({first}); "
                               "in Docker, NVIDIA_DRIVER_CAPABILITIES needs 'video'") from None
        self.cp, self.path, self.batch_size, self.time_base = cupy, Path(path), batch_size, time_base
        self.errors = 0
        try:
            self.decoder = nvc.SimpleDecoder(str(self.path), gpu_id=0, use_device_memory=True,
                                             output_color_type=nvc.OutputColorType.RGB)
        except Exception as exc:  # its errors are untyped
            raise BackendError(f"PyNvVideoCodec cannot decode {self.path.name}: {exc}") from None

    def __iter__(self) -> Iterator[Batch]:
        cp = self.cp
        pts = presentation_pts(self.path)
        start = 0
        while True:
            frames = self.decoder.get_batch_frames(self.batch_size)
            if not frames:
                break
            batch = cp.stack([cp.from_dlpack(f) for f in frames])  # (N, H, W, 3) uint8
            yield Batch(batch, take(pts, len(frames), self.path, "NVDEC"), self.time_base, start)
            start += len(frames)
        check_exhausted(pts, self.path, "NVDEC")
