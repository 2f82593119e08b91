"""The blur: NumPy reference and CUDA kernels, which must give the same pixels.

It works on the mosaic's frame-aligned cells, so it covers whole cells that touch a box (no shimmer as a
face moves, and the eval's coverage test is the same for every style). Downsample-upsample: each cell's
rounded mean (as the mosaic computes it), then each pixel a weighted mean of the means of the 3x3 cells
around the nearest cell centre, with the quadratic B-spline's weights (smooth, no bilinear creases; in
1/(8c^2) steps), counting only cells that are redacted too (normalised by their total weight). So the output
is made of the cell means alone: no pixel outside the redacted cells feeds in, and no detail finer than a
cell survives (the same information as a mosaic of those cells, without its edges). Integer arithmetic,
rounded half up: CPU and GPU agree exactly. The blur's cells are coarser than the mosaic's for large boxes
(``blur_cells``): smooth interpolation keeps more of a face recognisable than hard blocks of the same size,
which scripts/eval.py --calibrate measures.
"""
from __future__ import annotations

import numpy as np

from ..cells import CELL_CUDA, cell_edges, cell_means, cell_ranges

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


def _taps(p0: int, p1: int, c: int, shift: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """For pixels p0..p1-1 along one axis (samples of a plane subsampled by 2 ** ``shift``, each centred on
    the pixels it covers): the padded-grid index of the cell before the nearest cell centre, and the
    quadratic B-spline weights (in 1/(8c^2)) of that cell, the nearest and the next."""
    u = ((2 * np.arange(p0, p1) + 1) << shift) - c  # pixel centre minus the first cell centre, in half pixels
    j = (u + c) // (2 * c)                 # nearest cell centre (u > -c, so j >= 0)
    t = u - 2 * c * j                      # offset from it, in [-c, c)
    return j, [(c - t) ** 2, 6 * c * c - 2 * t * t, (c + t) ** 2]


def blur(frame: np.ndarray, boxes: np.ndarray, cell, shift=(0, 0)) -> np.ndarray:
    """Blur ``frame`` (H, W, C) in place over the cells that touch ``boxes``; returns it.

    ``cell`` is one size or one per box (``blur_cells``). Boxes of one cell size are done together,
    from the means of all their cells before any is written (so overlaps do not depend on order);
    largest cells first, then the finer ones from the result, as ``mosaic`` does. ``shift``: ``frame`` is a
    subsampled plane, as ``mosaic`` takes it.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    sy, sx = shift
    channels = frame.shape[2]
    height, width = frame.shape[0] << sy, frame.shape[1] << sx
    cells = np.broadcast_to(np.asarray(cell, np.int64), (len(boxes),))
    for c in np.unique(cells)[::-1]:
        c = int(c)
        rects = cell_ranges(boxes[cells == c], c, height, width)
        rows, cols = -(-height // c), -(-width // c)
        grid = np.full((rows + 2, cols + 2, channels), -1, np.int64)  # padded by 1: -1 = not redacted
        spans = []
        for cy0, cx0, cy1, cx1 in rects:
            ys, xs = cell_edges(cy0, cy1, c, height, sy), cell_edges(cx0, cx1, c, width, sx)
            means, hs, ws = cell_means(frame[ys[0]:ys[-1], xs[0]:xs[-1]], c, ys - ys[0], xs - xs[0])
            grid[cy0 + 1:cy1 + 1, cx0 + 1:cx1 + 1] = np.where((hs[:, None, None] > 0) & (ws[None, :, None] > 0),
                                                              means.astype(np.int64), -1)  # empty: no mean
            spans.append((int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])))
        for py0, py1, px0, px1 in spans:
            iy, wy = _taps(py0, py1, c, sy)
            ix, wx = _taps(px0, px1, c, sx)
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


# On the GPU: ``cell_means`` writes each cell's mean into a padded grid of the batch (-1: not redacted), then
# ``blur_cells`` interpolates every pixel from the grid alone, so no block reads a pixel another block writes.
MEANS_CUDA = CELL_CUDA + r"""
// grid: (N, rows + 2, cols + 2, 3) int, padded by one cell on every side, -1 where not redacted
extern "C" __global__ void cell_means(const unsigned char* frames, const int* cells, int* grid, int H, int W,
                                      int c, int rows, int cols) {
    const Cell q = cell_of(cells, H, W, c);
    __shared__ unsigned long long sum[3];
    unsigned int m[3];
    cell_mean(frames, q, H, W, sum, m);
    if (threadIdx.x < 3)
        grid[(((size_t)q.f * (rows + 2) + q.cy + 1) * (cols + 2) + q.cx + 1) * 3 + threadIdx.x] = (int)m[threadIdx.x];
}
"""

BLUR_CUDA = CELL_CUDA + r"""
extern "C" __global__ void blur_cells(unsigned char* frames, const int* cells, const int* grid, int H, int W,
                                      int c, int rows, int cols) {
    const Cell q = cell_of(cells, H, W, c);
    const int c2 = 2 * c;
    for (int i = threadIdx.x; i < q.h * q.w; i += blockDim.x) {
        const int y = q.y0 + i / q.w, x = q.x0 + i % q.w;
        const int uy = 2 * y + 1 - c, ux = 2 * x + 1 - c;  // from the first cell centre, half pixels
        const int jy = (uy + c) / c2, jx = (ux + c) / c2;  // nearest cell centre (uy > -c)
        const long long ty = uy - c2 * jy, tx = ux - c2 * jx, cc = (long long)c * c;
        const long long wy[3] = {(c - ty) * (c - ty), 6 * cc - 2 * ty * ty, (c + ty) * (c + ty)};
        const long long wx[3] = {(c - tx) * (c - tx), 6 * cc - 2 * tx * tx, (c + tx) * (c + tx)};
        long long n0 = 0, n1 = 0, n2 = 0, den = 0;
        for (int dy = 0; dy < 3; ++dy) {
            for (int dx = 0; dx < 3; ++dx) {  // padded grid: cell j - 1 + d is at j + d
                const int* m = grid + (((size_t)q.f * (rows + 2) + jy + dy) * (cols + 2) + jx + dx) * 3;
                if (m[0] < 0) continue;
                const long long wt = wy[dy] * wx[dx];
                n0 += wt * m[0]; n1 += wt * m[1]; n2 += wt * m[2]; den += wt;
            }
        }
        unsigned char* p = frames + pixel(q, i, H, W);
        p[0] = (unsigned char)((n0 + den / 2) / den);
        p[1] = (unsigned char)((n1 + den / 2) / den);
        p[2] = (unsigned char)((n2 + den / 2) / den);
    }
}
"""


class Blur:
    name = "blur"
    kernels = ((MEANS_CUDA, "cell_means"), (BLUR_CUDA, "blur_cells"))

    def cells(self, boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
        return blur_cells(boxes, cells)

    def redact(self, frame: np.ndarray, boxes: np.ndarray, cells, fill, shift=(0, 0)) -> np.ndarray:
        return blur(frame, boxes, cells, shift)

    def launch(self, cp, kernels, batch, cells, c: int, color) -> None:
        means, interpolate = kernels
        n, height, width = batch.shape[:3]
        rows, cols = -(-height // c), -(-width // c)
        grid = cp.full((n, rows + 2, cols + 2, 3), -1, cp.int32)
        args = (np.int32(height), np.int32(width), np.int32(c), np.int32(rows), np.int32(cols))
        means((len(cells),), (256,), (batch, cells, grid, *args))
        interpolate((len(cells),), (256,), (batch, cells, grid, *args))


STYLE = Blur()
