"""GPU decoder: DALI's video reader on NVDEC, ``batch_size``-frame sequences straight to GPU memory.

DALI drops a trailing partial sequence unless told otherwise; ``pad_mode="constant"`` pads it and
marks padded frames with timestamp -1, which we drop, so the output has exactly the input's
frames (lengths 1, 31, 33, 70 are in tests/gpu). Timestamps come from the container.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import BackendError, InputError
from .batch import Batch
from .timestamps import presentation_pts, take


class DaliDecoder:
    name = "dali"

    def __init__(self, path: Path, batch_size: int, time_base) -> None:
        try:
            import cupy
            from nvidia.dali import fn, pipeline_def
        except ImportError as exc:
            raise BackendError(f"DALI is not installed ({exc}); pip install '.[gpu]'") from None
        self.cp, self.path, self.batch_size, self.time_base = cupy, Path(path), batch_size, time_base
        self.errors = 0

        @pipeline_def(batch_size=1, num_threads=2, device_id=0, prefetch_queue_depth=2)
        def pipe():
            video, ts = fn.experimental.readers.video(
                device="gpu", filenames=[str(self.path)], sequence_length=batch_size, pad_mode="constant",
                enable_timestamps=True, name="reader")
            return video, ts

        try:
            self.pipe = pipe()
            self.pipe.build()
            meta = self.pipe.reader_meta("reader")
        except RuntimeError as exc:
            raise BackendError(f"DALI cannot read {self.path.name}: {str(exc).splitlines()[0]}") from None
        self.sequences = int(meta.get("epoch_size_padded") or meta.get("epoch_size"))

    def __iter__(self) -> Iterator[Batch]:
        cp = self.cp
        pts = presentation_pts(self.path)
        start = 0
        for _ in range(self.sequences):
            video, ts = self.pipe.run()
            ts = ts.as_cpu() if hasattr(ts, "as_cpu") else ts
            stamps = [float(t) for t in ts.as_array().reshape(-1)]
            real = [i for i, t in enumerate(stamps) if t >= 0]
            if not real:
                continue
            frames = cp.asarray(video.as_tensor())[0]          # (F, H, W, 3) uint8, DALI's buffer
            frames = frames[real[0]:real[-1] + 1].copy()      # ours: DALI reuses its buffer next run
            yield Batch(frames, take(pts, len(real), self.path, "DALI"), self.time_base, start)
            start += len(real)
        if next(pts, None) is not None:
            raise InputError(f"{self.path}: DALI decoded fewer frames than the container lists "
                             "(damaged file?); use --backend cpu")
