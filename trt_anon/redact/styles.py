"""Blur and solid fill, NumPy references (the mosaic's is mosaic.py). The GPU kernels must match them.

Both work on the mosaic's frame-aligned cells, so every style covers whole cells that touch a
box (no shimmer as a face moves, and the eval's coverage test is the same for all three):

- **solid**: every pixel of those cells becomes one colour.
- **blur**: downsample-upsample. Each cell's rounded mean (as the mosaic computes it), then each
  pixel a weighted mean of the means of the 3x3 cells around the nearest cell centre, with the
  quadratic B-spline's weights (smooth, no bilinear creases; in 1/(8c^2) steps), counting only cells
  that are redacted too (normalised by their total weight). So the output is made of the cell means
  alone: no pixel outside the redacted cells feeds in, and no detail finer than a cell survives (the
  same information as a mosaic of those cells, without its edges). Integer arithmetic, rounded half
  up: CPU and GPU agree exactly. The blur's cells are coarser than the mosaic's for large boxes (``blur_cells``): smooth
  interpolation keeps more of a face recognisable than hard blocks of the same size, which
  scripts/eval.py --calibrate measures.
"""
from __future__ import annotations

import numpy as np

from .mosaic import box_cells, cell_means, cell_ranges

# About 4 blur cells across a (margin-grown) box's shorter side, i.e. ~3 across a face (an eye band, wide
# and short, gets cells from its height, so the blur stays on the band); in steps of 8 px so that a box
# whose size jitters by a pixel or two keeps its grid. Calibrated with scripts/eval.py --calibrate.
BLUR_ACROSS = 4
BLUR_STEP = 8


def blur_cells(boxes: np.ndarray, cell) -> np.ndarray:
    """Blur cell size per box: at least the mosaic's (``cell``: one or per box), and about
    ``BLUR_ACROSS`` cells across the box's shorter side, rounded up to a multiple of ``BLUR_STEP``, up to
    256 px (a box over 1000 px then has more cells across; the weighted sums of 16-bit means fit int64)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    coarse = np.minimum(BLUR_STEP * np.ceil(side / (BLUR_ACROSS * BLUR_STEP)), 256)  # 16-bit sums fit int64
    return np.maximum(cell, coarse).astype(np.int64)


def fill_value(color: tuple[int, int, int], dtype) -> np.ndarray:
    """An 8-bit RGB colour in the frame's sample type (x257 for 16-bit: 255 -> 65535)."""
    return np.asarray(color, np.uint64).astype(dtype) * (257 if np.dtype(dtype).itemsize == 2 else 1)


def solid(frame: np.ndarray, boxes: np.ndarray, cell, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Fill the cells that touch ``boxes`` with ``color`` (8-bit RGB), in place; returns ``frame``."""
    height, width = frame.shape[:2]
    value = fill_value(color, frame.dtype)
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        frame[cy0 * c:cy1 * c, cx0 * c:cx1 * c] = value
    return frame


def _taps(p0: int, p1: int, c: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """For pixels p0..p1-1 along one axis: the padded-grid index of the cell before the nearest cell
    centre, and the quadratic B-spline weights (in 1/(8c^2)) of that cell, the nearest and the next."""
    u = 2 * np.arange(p0, p1) + 1 - c      # pixel centre minus the first cell centre, in half pixels
    j = (u + c) // (2 * c)                 # nearest cell centre (u > -c, so j >= 0)
    t = u - 2 * c * j                      # offset from it, in [-c, c)
    return j, [(c - t) ** 2, 6 * c * c - 2 * t * t, (c + t) ** 2]


def blur(frame: np.ndarray, boxes: np.ndarray, cell) -> np.ndarray:
    """Blur ``frame`` (H, W, C) in place over the cells that touch ``boxes``; returns it.

    ``cell`` is one size or one per box (``blur_cells``). Boxes of one cell size are done together,
    from the means of all their cells before any is written (so overlaps do not depend on order);
    largest cells first, then the finer ones from the result, as ``mosaic`` does.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    height, width, channels = frame.shape
    cells = np.broadcast_to(np.asarray(cell, np.int64), (len(boxes),))
    for c in np.unique(cells)[::-1]:
        c = int(c)
        rects = cell_ranges(boxes[cells == c], c, height, width)
        rows, cols = -(-height // c), -(-width // c)
        grid = np.full((rows + 2, cols + 2, channels), -1, np.int64)  # padded by 1: -1 = not redacted
        for cy0, cx0, cy1, cx1 in rects:
            means, _, _ = cell_means(frame[cy0 * c:cy1 * c, cx0 * c:cx1 * c], c)
            grid[cy0 + 1:cy1 + 1, cx0 + 1:cx1 + 1] = means
        for cy0, cx0, cy1, cx1 in rects:
            py0, py1, px0, px1 = cy0 * c, min(cy1 * c, height), cx0 * c, min(cx1 * c, width)
            iy, wy = _taps(py0, py1, c)
            ix, wx = _taps(px0, px1, c)
            num = np.zeros((py1 - py0, px1 - px0, channels), np.int64)
            den = np.zeros((py1 - py0, px1 - px0, 1), np.int64)
            for dy in (0, 1, 2):
                for dx in (0, 1, 2):
                    g = grid[(iy + dy)[:, None], (ix + dx)[None, :]]
                    w = (wy[dy][:, None] * wx[dx][None, :])[..., None] * (g[..., :1] >= 0)
                    num += w * g
                    den += w
            frame[py0:py1, px0:px1] = (num + den // 2) // den
    return frame
