"""The redaction styles on the GPU: one CUDA block per cell, frames redacted in place, batch at a time.

The host turns boxes into a list of cells (``mosaic.cell_groups``, tested on the CPU), one group per
cell size. Mosaic: one kernel averages each cell with integer sums and the reference's half-up
rounding. Solid: one kernel writes the colour. Blur: ``cell_means`` writes each cell's mean into a
padded grid of the batch (-1: not redacted), then ``blur_cells`` interpolates every pixel from the
grid alone (styles.py says how), so no block reads a pixel another block writes. Integer arithmetic
throughout: the results equal the NumPy references exactly.
"""
from __future__ import annotations

import numpy as np

from .mosaic import cell_groups

_CELL = r"""
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

_SRC = _CELL + r"""
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

_SOLID_SRC = _CELL + r"""
extern "C" __global__ void solid_cells(unsigned char* frames, const int* cells, int H, int W, int c,
                                       int r, int g, int b) {
    const Cell q = cell_of(cells, H, W, c);
    for (int i = threadIdx.x; i < q.h * q.w; i += blockDim.x) {
        unsigned char* p = frames + pixel(q, i, H, W);
        p[0] = (unsigned char)r; p[1] = (unsigned char)g; p[2] = (unsigned char)b;
    }
}
"""

_MEANS_SRC = _CELL + r"""
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

_BLUR_SRC = _CELL + r"""
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


class CupyRedactor:
    name = "cupy"

    def __init__(self, cell: int, style: str = "mosaic", color: tuple[int, int, int] = (0, 0, 0),
                 margin: tuple[float, float] = (12, 0.1)) -> None:
        import cupy as cp

        from . import cell_sizes

        self.cp, self.cell, self.cell_sizes, self.style, self.color = cp, cell, cell_sizes, style, color
        self.margin = margin
        if style == "blur":
            self.means, self.blur = cp.RawKernel(_MEANS_SRC, "cell_means"), cp.RawKernel(_BLUR_SRC, "blur_cells")
            kernels = (self.means, self.blur)
        elif style == "solid":
            self.solid = cp.RawKernel(_SOLID_SRC, "solid_cells")
            kernels = (self.solid,)
        else:
            self.kernel = cp.RawKernel(_SRC, "mosaic_cells")
            kernels = (self.kernel,)
        for kernel in kernels:
            kernel.compile()  # now, when the stage is chosen: a compiler failure falls back to the CPU

    def __call__(self, frames, boxes: list[np.ndarray]):
        from ..cuda import device_frames

        cp = self.cp
        batch = device_frames(frames)  # redacted in place only if it was one contiguous uint8 array
        n, height, width = batch.shape[:3]
        sizes = [self.cell_sizes(b, self.cell, self.style, self.margin) for b in boxes]
        groups = cell_groups(boxes, sizes, height, width)
        for c, cells in groups:
            geometry = (np.int32(height), np.int32(width), np.int32(c))
            cells = cp.asarray(cells)
            if self.style == "solid":
                self.solid((len(cells),), (256,), (batch, cells, *geometry, *map(np.int32, self.color)))
            elif self.style == "blur":
                rows, cols = -(-height // c), -(-width // c)
                grid = cp.full((n, rows + 2, cols + 2, 3), -1, cp.int32)
                self.means((len(cells),), (256,), (batch, cells, grid, *geometry, np.int32(rows), np.int32(cols)))
                self.blur((len(cells),), (256,), (batch, cells, grid, *geometry, np.int32(rows), np.int32(cols)))
            else:
                self.kernel((len(cells),), (256,), (batch, cells, *geometry))
        return batch
