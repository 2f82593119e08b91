"""Redact stage: boxes in, frames mosaicked in place. NumPy is the reference."""
from __future__ import annotations

import numpy as np

from ..detect.detections import Detections, grow
from .mosaic import auto_cells, cell_mask, cell_ranges, mosaic, pixel_mask

__all__ = ["select_redactor", "NumpyRedactor", "redaction_boxes", "mosaic", "cell_mask", "cell_ranges", "pixel_mask",
           "cell_sizes"]


def redaction_boxes(det: Detections, target: str, margin_px: float, margin_rel: float,
                    width: int, height: int) -> np.ndarray:
    """The boxes to mosaic for one frame: grown face boxes, or the (grown) eye bands."""
    if target == "eyes":
        eyes = det.eyes if det.eyes is not None else np.zeros((0, 4), np.float32)
        return grow(eyes, margin_px / 2, 0.0, width, height)
    return grow(det.xyxy, margin_px, margin_rel, width, height)


def cell_sizes(boxes: np.ndarray, mosaic_cell: int | str) -> np.ndarray:
    """One cell size per box: the fixed ``mosaic_cell``, or size-aware with "auto"."""
    if mosaic_cell == "auto":
        return auto_cells(boxes)
    return np.full(len(boxes), int(mosaic_cell), np.int64)


class NumpyRedactor:
    name = "numpy"

    def __init__(self, cell: int | str) -> None:
        self.cell = cell

    def __call__(self, frames: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        for frame, b in zip(frames, boxes):
            mosaic(frame, b, cell_sizes(b, self.cell))
        return frames


def select_redactor(config, gpu: bool):
    if gpu:
        from .cupy_mosaic import CupyRedactor
        return CupyRedactor(config.mosaic_cell)
    return NumpyRedactor(config.mosaic_cell)
