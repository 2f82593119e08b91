"""Solid fill: every pixel of the cells that touch a box becomes one colour (``--fill-color``).

The NumPy reference, and the CUDA kernel that must equal it exactly.
"""
from __future__ import annotations

import numpy as np

from ..cells import CELL_CUDA, box_cells, cell_edges

CUDA = CELL_CUDA + r"""
extern "C" __global__ void solid_cells(unsigned char* frames, const int* cells, int H, int W, int c,
                                       int r, int g, int b) {
    const Cell q = cell_of(cells, H, W, c);
    for (int i = threadIdx.x; i < q.h * q.w; i += blockDim.x) {
        unsigned char* p = frames + pixel(q, i, H, W);
        p[0] = (unsigned char)r; p[1] = (unsigned char)g; p[2] = (unsigned char)b;
    }
}
"""


def fill_value(color: tuple[int, int, int], dtype) -> np.ndarray:
    """An 8-bit RGB colour in the frame's sample type (x257 for 16-bit: 255 -> 65535)."""
    return np.asarray(color, np.uint64).astype(dtype) * (257 if np.dtype(dtype).itemsize == 2 else 1)


def solid(frame: np.ndarray, boxes: np.ndarray, cell, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Fill the cells that touch ``boxes`` with ``color`` (8-bit RGB), in place; returns ``frame``."""
    return fill_cells(frame, boxes, cell, fill_value(color, frame.dtype))


def fill_cells(frame: np.ndarray, boxes: np.ndarray, cell, value, shift=(0, 0)) -> np.ndarray:
    """Fill the cells that touch ``boxes`` with ``value`` (samples of ``frame``'s type, one per channel), in
    place; ``shift``: ``frame`` is a subsampled plane (``mosaic``'s)."""
    sy, sx = shift
    height, width = frame.shape[0] << sy, frame.shape[1] << sx
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        ys, xs = cell_edges(cy0, cy1, c, height, sy), cell_edges(cx0, cx1, c, width, sx)
        frame[ys[0]:ys[-1], xs[0]:xs[-1]] = value
    return frame


class Solid:
    name = "solid"
    kernels = ((CUDA, "solid_cells"),)

    def cells(self, boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        return cells

    def redact(self, frame: np.ndarray, boxes: np.ndarray, cells, fill, shift=(0, 0)) -> np.ndarray:
        return fill_cells(frame, boxes, cells, fill, shift)

    def launch(self, cp, kernels, batch, cells, c: int, color) -> None:
        (kernel,) = kernels
        height, width = batch.shape[1:3]
        kernel((len(cells),), (256,), (batch, cells, np.int32(height), np.int32(width), np.int32(c),
                                       *map(np.int32, color)))


STYLE = Solid()
