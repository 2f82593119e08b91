"""The 25:1 mosaic: every cell that touches a box becomes the rounded mean of its own pixels.

The NumPy reference, and the CUDA kernel that must equal it exactly (one block per cell).
"""
from __future__ import annotations

import numpy as np

from ..cells import CELL_CUDA, box_cells, cell_edges, cell_means

CUDA = CELL_CUDA + r"""
extern "C" __global__ void mosaic_cells(unsigned char* frames, const int* cells, int H, int W, int c) {
    const Cell q = cell_of(cells, H, W, c);
    __shared__ unsigned long long sum[3];
    unsigned int m[3];
    cell_mean(frames, q, H, W, sum, m);
    for (int i = threadIdx.x; i < q.h * q.w; i += blockDim.x) {
        unsigned char* p = frames + pixel(q, i, H, W);
        p[0] = (unsigned char)m[0]; p[1] = (unsigned char)m[1]; p[2] = (unsigned char)m[2];
    }
}
"""


def mosaic(frame: np.ndarray, boxes: np.ndarray, cell: int | np.ndarray = 25, shift=(0, 0)) -> np.ndarray:
    """Mosaic ``frame`` (H, W, C) in place over ``boxes`` (N, 4 x1 y1 x2 y2); returns it.

    ``cell`` is one size for all boxes or one per box. Boxes are done one at a time, largest
    cells first: where two overlap, the shared cells are already constant, and the rounded mean
    of a constant cell is that constant, so with one cell size the order does not matter.
    ``shift`` (vertical, horizontal): ``frame`` is a plane subsampled by 2 ** shift (YUV's chroma), boxes and
    cells in full-size pixels: each cell becomes the mean of its own samples (``cell_edges``).
    """
    sy, sx = shift
    height, width = frame.shape[0] << sy, frame.shape[1] << sx
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        ys, xs = cell_edges(cy0, cy1, c, height, sy), cell_edges(cx0, cx1, c, width, sx)
        region = frame[ys[0]:ys[-1], xs[0]:xs[-1]]
        means, hs, ws = cell_means(region, c, ys - ys[0], xs - xs[0])
        region[...] = np.repeat(np.repeat(means.astype(frame.dtype), hs, axis=0), ws, axis=1)
    return frame


class Mosaic:
    name = "mosaic"
    kernels = ((CUDA, "mosaic_cells"),)

    def cells(self, boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        return cells

    def redact(self, frame: np.ndarray, boxes: np.ndarray, cells, fill, shift=(0, 0)) -> np.ndarray:
        return mosaic(frame, boxes, cells, shift)

    def launch(self, cp, kernels, batch, cells, c: int, color) -> None:
        (kernel,) = kernels
        height, width = batch.shape[1:3]
        kernel((len(cells),), (256,), (batch, cells, np.int32(height), np.int32(width), np.int32(c)))


STYLE = Mosaic()
