"""The cell grid every style redacts on, and its GPU side.

Cells are ``cell`` x ``cell`` pixels on a grid aligned to the frame's origin, so a redaction
does not shimmer as a face moves. A box covers the pixels [floor(x1), ceil(x2)) x
[floor(y1), ceil(y2)); every cell that shares a pixel with a box is redacted (cells at the
right/bottom edge may be smaller than ``cell``). A cell's mean is rounded half up:
(sum + n // 2) // n, per channel. Larger faces get larger cells (``face_cells``).
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


def pixel_mask(boxes: np.ndarray, cell, height: int, width: int, window=None) -> np.ndarray:
    """Boolean (H, W): the pixels ``mosaic`` replaces for these boxes (``cell``: one, or per box); with ``window``
    (y0, y1, x0, x1), only those rows and columns of it, made for them alone."""
    y0, y1, x0, x1 = window or (0, height, 0, width)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        mask[max(cy0 * c - y0, 0):max(cy1 * c - y0, 0), max(cx0 * c - x0, 0):max(cx1 * c - x0, 0)] = True
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


def cell_edges(k0: int, k1: int, c: int, full: int, shift: int = 0) -> np.ndarray:
    """The sample edges of cells ``k0``..``k1 - 1`` of size ``c`` along an axis of ``full`` pixels (k1 - k0 + 1
    of them), on a plane subsampled by ``2 ** shift``: a cell holds the samples whose first pixel lies in it,
    so a 4:2:0 chroma cell is its luma cell's own (25 px cells alternate 13 and 12 chroma samples). The last
    cell may hold none: a 1 px cell at the frame's edge (576 = 23 * 25 + 1) whose pixel's sample starts in the
    cell before."""
    k = np.arange(k0, k1 + 1, dtype=np.int64)
    return -(-np.minimum(k * c, full) >> shift)


def cell_means(region: np.ndarray, c: int, ys: np.ndarray | None = None,
               xs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rounded (half up) mean of every ``c`` x ``c`` cell of ``region`` (whose origin is on the grid), as
    (rows, cols, C) uint64, and the cells' heights and widths (the last row/column may be smaller, or empty:
    its means are then 0). ``ys``, ``xs``: the cells' edges in the region instead (``cell_edges`` less the
    first), for a subsampled plane."""
    h, w = region.shape[:2]
    ys = np.arange(0, h, c) if ys is None else ys[:-1]
    xs = np.arange(0, w, c) if xs is None else xs[:-1]
    hs, ws = np.diff(np.append(ys, h)), np.diff(np.append(xs, w))
    ny, nx = int(np.count_nonzero(hs)), int(np.count_nonzero(ws))  # only a last cell can be empty
    means = np.zeros((len(ys), len(xs), region.shape[2]), np.uint64)
    if ny and nx:
        sums = np.add.reduceat(np.add.reduceat(region.astype(np.uint64), ys[:ny], axis=0), xs[:nx], axis=1)
        counts = (hs[:ny, None] * ws[None, :nx])[..., None].astype(np.uint64)
        means[:ny, :nx] = (sums + counts // 2) // counts
    return means, hs, ws


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


# The CUDA side of the grid, which every style's kernels start with: one block per cell.
CELL_CUDA = r"""
// The block's cell: cells[3 k] = (frame, cell row, cell column); top-left pixel (y0, x0), size h x w
// (clipped at the frame's edge). Pixel i of the cell (0 <= i < h w) is at pixel(q, i, H, W).
struct Cell { int f, cy, cx, y0, x0, h, w; };
__device__ Cell cell_of(const int* cells, int H, int W, int c) {
    const int k = blockIdx.x;
    Cell q;
    q.f = cells[3 * k]; q.cy = cells[3 * k + 1]; q.cx = cells[3 * k + 2];
    q.y0 = q.cy * c; q.x0 = q.cx * c;
    q.h = min(c, H - q.y0); q.w = min(c, W - q.x0);
    return q;
}
__device__ size_t pixel(Cell q, int i, int H, int W) {
    return (((size_t)q.f * H + q.y0 + i / q.w) * W + q.x0 + i % q.w) * 3;
}
// The cell's channel means with the reference's half-up rounding, summed by every thread of the block
// into sum (3 values of the block's shared memory); every thread gets them in m.
__device__ void cell_mean(const unsigned char* frames, Cell q, int H, int W, unsigned long long* sum,
                          unsigned int* m) {
    if (threadIdx.x < 3) sum[threadIdx.x] = 0ULL;
    __syncthreads();
    unsigned long long a0 = 0, a1 = 0, a2 = 0;
    for (int i = threadIdx.x; i < q.h * q.w; i += blockDim.x) {
        const unsigned char* p = frames + pixel(q, i, H, W);
        a0 += p[0]; a1 += p[1]; a2 += p[2];
    }
    atomicAdd(&sum[0], a0); atomicAdd(&sum[1], a1); atomicAdd(&sum[2], a2);
    __syncthreads();
    const unsigned long long n = (unsigned long long)(q.h * q.w);
    for (int j = 0; j < 3; ++j) m[j] = (unsigned int)((sum[j] + n / 2) / n);
}
"""
