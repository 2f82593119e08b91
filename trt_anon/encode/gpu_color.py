"""RGB -> YUV 4:2:0 on the GPU, so that only half the bytes (or none, with NVENC) leave the device.

The matrix and range follow the input's tags (BT.709 for HD, BT.601 otherwise, limited range
unless tagged full), i.e. the inverse of the conversion the decoder applied.
"""
from __future__ import annotations

import numpy as np

# AVColorSpace values: 1 = BT.709, 5/6 = BT.601, 9/10 = BT.2020; AVColorRange: 2 = full (JPEG)
KR_KB = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}

_SRC = r"""
extern "C" __global__ void rgb_to_i420(const unsigned char* rgb, unsigned char* out, int H, int W,
                                       float kr, float kb, int full, int nv12) {
    // one thread per 2x2 block: 4 luma samples, 1 chroma pair
    int x = (blockIdx.x * blockDim.x + threadIdx.x) * 2;
    int y = (blockIdx.y * blockDim.y + threadIdx.y) * 2;
    int b = blockIdx.z;
    if (x >= W || y >= H) return;
    const float kg = 1.f - kr - kb;
    const float ys = full ? 255.f / 255.f : 219.f / 255.f, yo = full ? 0.f : 16.f;
    const float cs = full ? 255.f / 255.f : 224.f / 255.f;
    const unsigned char* src = rgb + (size_t)b * H * W * 3;
    unsigned char* Y = out + (size_t)b * H * W * 3 / 2;
    unsigned char* U = Y + (size_t)H * W;
    float su = 0.f, sv = 0.f;
    for (int dy = 0; dy < 2; ++dy) for (int dx = 0; dx < 2; ++dx) {
        const unsigned char* p = src + ((size_t)(y + dy) * W + (x + dx)) * 3;
        float r = p[0], g = p[1], bl = p[2];
        float l = kr * r + kg * g + kb * bl;
        Y[(size_t)(y + dy) * W + x + dx] = (unsigned char)fminf(fmaxf(yo + ys * l + 0.5f, 0.f), 255.f);
        su += (bl - l) / (2.f * (1.f - kb));
        sv += (r - l) / (2.f * (1.f - kr));
    }
    unsigned char u = (unsigned char)fminf(fmaxf(128.f + cs * su / 4.f + 0.5f, 0.f), 255.f);
    unsigned char v = (unsigned char)fminf(fmaxf(128.f + cs * sv / 4.f + 0.5f, 0.f), 255.f);
    size_t ci = (size_t)(y / 2) * (W / 2) + x / 2;
    if (nv12) { U[2 * ci] = u; U[2 * ci + 1] = v; }
    else { U[ci] = u; U[(size_t)H * W / 4 + ci] = v; }
}
"""
_kernel = None


def matrix(colorspace: int, height: int) -> tuple[float, float]:
    """(Kr, Kb) for an AVColorSpace; untagged video: BT.709 from 720 lines up, else BT.601."""
    return KR_KB.get(colorspace, KR_KB[1] if height >= 720 else KR_KB[5])


def rgb_to_yuv420(frames, colorspace: int, color_range: int, nv12: bool = False):
    """(N, H, W, 3) uint8 CuPy RGB (H, W even) -> (N, H * 3 // 2, W) uint8: I420, or NV12."""
    global _kernel
    import cupy as cp

    if _kernel is None:
        _kernel = cp.RawKernel(_SRC, "rgb_to_i420")
    frames = cp.ascontiguousarray(frames)
    n, h, w = frames.shape[:3]
    out = cp.empty((n, h * 3 // 2, w), cp.uint8)
    kr, kb = matrix(colorspace, h)
    _kernel(((w // 2 + 15) // 16, (h // 2 + 15) // 16, n), (16, 16, 1),
            (frames, out, np.int32(h), np.int32(w), np.float32(kr), np.float32(kb), np.int32(color_range == 2),
             np.int32(nv12)))
    return out
