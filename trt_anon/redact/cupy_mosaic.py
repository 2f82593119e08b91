"""The mosaic on the GPU: one CUDA block per cell, frames redacted in place, batch at a time.

The host turns boxes into a list of cells (``mosaic.cell_groups``, tested on the CPU); the
kernel averages each cell with integer sums and the reference's half-up rounding, so the
result equals the NumPy reference exactly.
"""
from __future__ import annotations

import numpy as np

from .mosaic import cell_groups

_SRC = r"""
extern "C" __global__ void mosaic_cells(unsigned char* frames, const int* cells, int H, int W, int c) {
    const int k = blockIdx.x;
    const int f = cells[3 * k], cy = cells[3 * k + 1], cx = cells[3 * k + 2];
    const int y0 = cy * c, x0 = cx * c;
    const int h = min(c, H - y0), w = min(c, W - x0);
    __shared__ unsigned long long sum[3];
    if (threadIdx.x < 3) sum[threadIdx.x] = 0ULL;
    __syncthreads();
    unsigned char* base = frames + (((size_t)f * H + y0) * W + x0) * 3;
    unsigned long long a0 = 0, a1 = 0, a2 = 0;
    for (int i = threadIdx.x; i < h * w; i += blockDim.x) {
        const unsigned char* p = base + ((size_t)(i / w) * W + (i % w)) * 3;
        a0 += p[0]; a1 += p[1]; a2 += p[2];
    }
    atomicAdd(&sum[0], a0); atomicAdd(&sum[1], a1); atomicAdd(&sum[2], a2);
    __syncthreads();
    const unsigned long long n = (unsigned long long)(h * w);
    const unsigned char m0 = (unsigned char)((sum[0] + n / 2) / n);
    const unsigned char m1 = (unsigned char)((sum[1] + n / 2) / n);
    const unsigned char m2 = (unsigned char)((sum[2] + n / 2) / n);
    for (int i = threadIdx.x; i < h * w; i += blockDim.x) {
        unsigned char* p = base + ((size_t)(i / w) * W + (i % w)) * 3;
        p[0] = m0; p[1] = m1; p[2] = m2;
    }
}
"""


class CupyRedactor:
    name = "cupy"

    def __init__(self, cell) -> None:
        import cupy as cp

        from . import cell_sizes

        self.cp, self.cell, self.cell_sizes = cp, cell, cell_sizes
        self.kernel = cp.RawKernel(_SRC, "mosaic_cells")

    def __call__(self, frames, boxes: list[np.ndarray]):
        from ..cuda import device_frames

        cp = self.cp
        batch = device_frames(frames)  # redacted in place only if it was one contiguous uint8 array
        n, height, width = batch.shape[:3]
        groups = cell_groups(boxes, [self.cell_sizes(b, self.cell) for b in boxes], height, width)
        for c, cells in groups:
            self.kernel((len(cells),), (256,), (batch, cp.asarray(cells), np.int32(height), np.int32(width),
                                                 np.int32(c)))
        return batch
