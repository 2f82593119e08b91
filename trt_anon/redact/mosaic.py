"""The 25:1 mosaic, NumPy reference. Every other redactor must match it exactly.

Cells are ``cell`` x ``cell`` pixels on a grid aligned to the frame's origin, so the mosaic
does not shimmer as a face moves. A box covers the pixels [floor(x1), ceil(x2)) x
[floor(y1), ceil(y2)); every cell that shares a pixel with a box becomes the rounded mean
of that cell's own pixels (cells at the right/bottom edge may be smaller than ``cell``).
Rounding is half up: (sum + n // 2) // n, per channel.
"""
from __future__ import annotations

import numpy as np


def cell_ranges(boxes: np.ndarray, cell, height: int, width: int) -> np.ndarray:
    """Integer cell rectangles (cy0, cx0, cy1, cx1), inclusive-exclusive, one per non-empty box."""
    rects, keep = _cell_rects(boxes, cell, height, width)
    return rects[keep]


def _cell_rects(boxes: np.ndarray, cell, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell rectangles for every box (``cell``: one size, or one per box) and which are non-empty."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0 = np.clip(np.floor(b[:, 0]), 0, width).astype(np.int64)
    y0 = np.clip(np.floor(b[:, 1]), 0, height).astype(np.int64)
    x1 = np.clip(np.ceil(b[:, 2]), 0, width).astype(np.int64)
    y1 = np.clip(np.ceil(b[:, 3]), 0, height).astype(np.int64)
    keep = (x1 > x0) & (y1 > y0)
    rects = np.stack([y0 // cell, x0 // cell, (y1 - 1) // cell + 1, (x1 - 1) // cell + 1], axis=1)
    return rects, keep


def cell_mask(boxes: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    """Boolean (rows, cols) grid of the cells to replace."""
    mask = np.zeros((-(-height // cell), -(-width // cell)), bool)
    for cy0, cx0, cy1, cx1 in cell_ranges(boxes, cell, height, width):
        mask[cy0:cy1, cx0:cx1] = True
    return mask


def box_cells(boxes: np.ndarray, cell, height: int, width: int):
    """Yield (cell size, cy0, cx0, cy1, cx1) for each non-empty box, largest cells first.

    ``cell`` is one size for all boxes or one per box. The order is the one ``mosaic`` needs:
    where boxes of different cell sizes overlap, the finer mosaic is applied last.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    cells = np.broadcast_to(np.asarray(cell, np.int64), (len(boxes),))
    for i in np.argsort(-cells, kind="stable"):
        c = int(cells[i])
        for cy0, cx0, cy1, cx1 in cell_ranges(boxes[i:i + 1], c, height, width):
            yield c, int(cy0), int(cx0), int(cy1), int(cx1)


def pixel_mask(boxes: np.ndarray, cell, height: int, width: int) -> np.ndarray:
    """Boolean (H, W): the pixels ``mosaic`` replaces for these boxes (``cell``: one, or per box)."""
    mask = np.zeros((height, width), bool)
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        mask[cy0 * c:cy1 * c, cx0 * c:cx1 * c] = True
    return mask


ACROSS = 4        # at most this many cells across a face: what the 25 px cell leaves of a 100 px face
MOST_CELL = 512  # px: the coarsest cell (faces over 2000 px wide get more than ACROSS across)


def face_cells(boxes: np.ndarray, cell: int = 25, margin: tuple[float, float] = (12, 0.1)) -> np.ndarray:
    """The cell per box: ``cell`` (the floor: 25 px cells make 25:1), or for larger faces the smallest
    multiple of it that leaves at most ``ACROSS`` cells across the face (the shorter side of the box less
    ``margin``, the pixels and fraction per side it was grown by). A 25 px grid leaves a 400 px face
    recognisable; whole multiples keep the grid stable as a box's size jitters, and a coarse cell is made of
    whole finer ones (scripts/eval.py --calibrate measures what survives).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    face = (side - 2 * margin[0]) / (1 + 2 * margin[1])
    steps = np.clip(np.ceil(face / (ACROSS * cell) - 1e-9), 1, max(1, MOST_CELL // cell))
    return (cell * steps).astype(np.int64)


def mosaic(frame: np.ndarray, boxes: np.ndarray, cell: int | np.ndarray = 25) -> np.ndarray:
    """Mosaic ``frame`` (H, W, C) in place over ``boxes`` (N, 4 x1 y1 x2 y2); returns it.

    ``cell`` is one size for all boxes or one per box. Boxes are done one at a time, largest
    cells first: where two overlap, the shared cells are already constant, and the rounded mean
    of a constant cell is that constant, so with one cell size the order does not matter.
    """
    height, width = frame.shape[:2]
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        py0, py1 = cy0 * c, min(cy1 * c, height)
        px0, px1 = cx0 * c, min(cx1 * c, width)
        region = frame[py0:py1, px0:px1]
        means, hs, ws = cell_means(region, c)
        region[...] = np.repeat(np.repeat(means.astype(frame.dtype), hs, axis=0), ws, axis=1)
    return frame


def cell_means(region: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounded (half up) mean of every ``c`` x ``c`` cell of ``region`` (whose origin is on the grid), as
    (rows, cols, C) uint64, and the cells' heights and widths (the last row/column may be smaller)."""
    h, w = region.shape[:2]
    ys, xs = np.arange(0, h, c), np.arange(0, w, c)
    sums = np.add.reduceat(np.add.reduceat(region.astype(np.uint64), ys, axis=0), xs, axis=1)
    hs, ws = np.diff(np.append(ys, h)), np.diff(np.append(xs, w))
    counts = (hs[:, None] * ws[None, :])[..., None].astype(np.uint64)
    return (sums + counts // 2) // counts, hs, ws


def cell_groups(boxes_per_frame: list[np.ndarray], cells_per_frame: list[np.ndarray], height: int,
                width: int) -> list[tuple[int, np.ndarray]]:
    """The cells to replace in a batch, for a GPU kernel: [(cell size, (K, 3) int32 frame/row/col)].

    Largest cells first, each cell once per group, so one launch per group has no two threads
    writing the same pixel, and the result equals ``mosaic`` applied frame by frame. In NumPy
    with no loop over boxes or cells: it runs on the main thread for every batch (~20 us/frame).
    """
    counts = [len(b) for b in boxes_per_frame]
    if not sum(counts):
        return []
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in boxes_per_frame])
    sizes = np.concatenate([np.broadcast_to(np.asarray(c, np.int64), (n,)) for c, n in zip(cells_per_frame, counts)])
    frame = np.repeat(np.arange(len(counts)), counts)
    rects, keep = _cell_rects(boxes, sizes, height, width)
    groups = []
    for c in np.unique(sizes[keep])[::-1]:
        sel = keep & (sizes == c)
        (cy0, cx0, cy1, cx1), f = rects[sel].T, frame[sel]
        ny, nx = cy1 - cy0, cx1 - cx0
        n = ny * nx                                  # cells per box; every cell gets a running index
        box = np.repeat(np.arange(len(n)), n)
        i = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        rows, cols = -(-height // c), -(-width // c)
        key = (f[box] * rows + cy0[box] + i // nx[box]) * cols + cx0[box] + i % nx[box]
        grid = np.zeros(len(counts) * rows * cols, bool)  # a mark per cell of the batch: no sort
        grid[key] = True
        key = np.flatnonzero(grid)                   # sorted (frame, row, col), each cell once
        cells = np.stack([key // (rows * cols), key // cols % rows, key % cols], axis=1)
        groups.append((int(c), cells.astype(np.int32)))
    return groups

