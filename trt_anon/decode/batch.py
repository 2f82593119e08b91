"""The unit every stage works on: a batch of frames and the timestamps they keep."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass
class Batch:
    """``frames`` is (N, H, W, 3) RGB, uint8 (uint16 for deep video on the CPU): a NumPy array on the CPU path,
    CuPy on the GPU path; or, where the CPU decoder keeps its own pixels, (N, L) planar rows (``planar.Planar``).

    ``pts`` are the input's own timestamps in ``time_base``: the encoder writes them unchanged,
    so frame count, order and timing (variable frame rate too) survive.
    """

    frames: Any
    pts: list[int]
    time_base: Fraction
    start: int  # index of the first frame in the video

    def __len__(self) -> int:
        return len(self.pts)
