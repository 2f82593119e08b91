"""Colour conversion on the GPU, both ways, with one matrix per stream.

``rgb_to_yuv420``: RGB -> YUV 4:2:0, so that only half the bytes (or none, with NVENC) leave the
device. ``ycc_to_rgb``: the YCbCr that DALI's GPU reader gives (``image_type=YCbCr``: the
stream's own Y, Cb, Cr codes, chroma upsampled) -> RGB; ``nv12_to_rgb`` the same for
PyNvVideoCodec's native NV12. The decoders' own RGB would not do: DALI's always uses BT.601 (its
``color_space.cu``), PyNvVideoCodec's takes untagged video as BT.709 and every stream as limited
range. Converting here instead, with ``matrix()`` (the input's tags; BT.601 when untagged, as
libswscale; limited range unless tagged full), makes decode and encode exact inverses of each other.
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
_YCC_SRC = r"""
__device__ void ycc_pixel(float y, float cb, float cr, unsigned char* q, float kr, float kb, int full) {
    // codes as the stream stores them (limited range: Y 16..235, C 16..240) -> RGB
    const float kg = 1.f - kr - kb;
    const float ys = full ? 1.f : 255.f / 219.f, yo = full ? 0.f : 16.f;
    const float cs = full ? 1.f : 255.f / 224.f;
    float l = (y - yo) * ys;
    cb = (cb - 128.f) * cs;
    cr = (cr - 128.f) * cs;
    float r = l + 2.f * (1.f - kr) * cr;
    float b = l + 2.f * (1.f - kb) * cb;
    float g = (l - kr * r - kb * b) / kg;
    q[0] = (unsigned char)fminf(fmaxf(r + 0.5f, 0.f), 255.f);
    q[1] = (unsigned char)fminf(fmaxf(g + 0.5f, 0.f), 255.f);
    q[2] = (unsigned char)fminf(fmaxf(b + 0.5f, 0.f), 255.f);
}

extern "C" __global__ void ycc_to_rgb(const unsigned char* ycc, unsigned char* rgb, int n, float kr, float kb,
                                      int full) {
    // one thread per pixel of 4:4:4 YCbCr
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned char* p = ycc + (size_t)i * 3;
    ycc_pixel(p[0], p[1], p[2], rgb + (size_t)i * 3, kr, kb, full);
}

extern "C" __global__ void nv12_to_rgb(const unsigned char* nv12, unsigned char* rgb, int H, int W, float kr,
                                       float kb, int full) {
    // one thread per pixel of a batch of NV12 frames (N, H * 3 / 2, W): the luma plane, then Cb Cr
    // interleaved at half size; each chroma sample serves its 2x2 block (as libswscale's unscaled path)
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int b = blockIdx.z;
    if (x >= W || y >= H) return;
    const unsigned char* f = nv12 + (size_t)b * H * W * 3 / 2;
    const unsigned char* c = f + (size_t)H * W + (size_t)(y / 2) * W + (x / 2) * 2;
    ycc_pixel(f[(size_t)y * W + x], c[0], c[1], rgb + (((size_t)b * H + y) * W + x) * 3, kr, kb, full);
}
"""
_kernel = None
_ycc_kernel = None
_nv12_kernel = None


def matrix(colorspace: int) -> tuple[float, float]:
    """(Kr, Kb) for an AVColorSpace; untagged video: BT.601 at every size.

    BT.601 is what libswscale (PyAV's reformatter) assumes for untagged frames, so PyAV decodes,
    the CPU encoders and the GPU path all read and write untagged colours with one matrix and
    the round trip stays exact; a size-based guess would disagree with PyAV on HD frames.
    """
    return KR_KB.get(colorspace, KR_KB[5])


def rgb_to_yuv420(frames, colorspace: int, color_range: int, nv12: bool = False):
    """(N, H, W, 3) uint8 CuPy RGB (H, W even) -> (N, H * 3 // 2, W) uint8: I420, or NV12."""
    global _kernel
    import cupy as cp

    from ..cuda import device_frames

    if _kernel is None:
        _kernel = cp.RawKernel(_SRC, "rgb_to_i420")
    frames = device_frames(frames)
    n, h, w = frames.shape[:3]
    out = cp.empty((n, h * 3 // 2, w), cp.uint8)
    kr, kb = matrix(colorspace)
    _kernel(((w // 2 + 15) // 16, (h // 2 + 15) // 16, n), (16, 16, 1),
            (frames, out, np.int32(h), np.int32(w), np.float32(kr), np.float32(kb), np.int32(color_range == 2),
             np.int32(nv12)))
    return out


def ycc_to_rgb(frames, colorspace: int, color_range: int):
    """(N, H, W, 3) uint8 CuPy YCbCr (4:4:4) -> a new (N, H, W, 3) uint8 RGB array, with the
    matrix and range ``rgb_to_yuv420`` converts back with."""
    global _ycc_kernel
    import cupy as cp

    from ..cuda import device_frames

    if _ycc_kernel is None:
        _ycc_kernel = cp.RawKernel(_YCC_SRC, "ycc_to_rgb")
    frames = device_frames(frames)
    out = cp.empty_like(frames)
    n = frames.size // 3
    kr, kb = matrix(colorspace)
    _ycc_kernel(((n + 255) // 256,), (256,), (frames, out, np.int32(n), np.float32(kr), np.float32(kb),
                                             np.int32(color_range == 2)))
    return out


def nv12_to_rgb(frames, colorspace: int, color_range: int):
    """(N, H * 3 // 2, W) uint8 CuPy NV12 (a GPU decoder's native output) -> a new (N, H, W, 3) uint8
    RGB array, with the matrix and range ``rgb_to_yuv420`` converts back with."""
    global _nv12_kernel
    import cupy as cp

    if _nv12_kernel is None:
        _nv12_kernel = cp.RawKernel(_YCC_SRC, "nv12_to_rgb")
    frames = cp.ascontiguousarray(frames)
    if frames.dtype != cp.uint8 or frames.ndim != 3 or frames.shape[1] % 3 or frames.shape[2] % 2:
        raise ValueError(f"NV12 batches are (N, H * 3 / 2, W) uint8, got {frames.dtype} {tuple(frames.shape)}")
    n, h, w = frames.shape[0], frames.shape[1] * 2 // 3, frames.shape[2]
    out = cp.empty((n, h, w, 3), cp.uint8)
    kr, kb = matrix(colorspace)
    _nv12_kernel(((w + 15) // 16, (h + 15) // 16, n), (16, 16, 1),
                 (frames, out, np.int32(h), np.int32(w), np.float32(kr), np.float32(kb), np.int32(color_range == 2)))
    return out


def compile_kernels() -> None:
    """Compile the conversion kernels now (NVRTC, once per process), so that a machine whose CUDA
    cannot compile them falls back when the stages are chosen, not in the middle of a file."""
    global _kernel, _ycc_kernel, _nv12_kernel
    import cupy as cp

    _kernel = _kernel or cp.RawKernel(_SRC, "rgb_to_i420")
    _ycc_kernel = _ycc_kernel or cp.RawKernel(_YCC_SRC, "ycc_to_rgb")
    _nv12_kernel = _nv12_kernel or cp.RawKernel(_YCC_SRC, "nv12_to_rgb")
    for k in (_kernel, _ycc_kernel, _nv12_kernel):
        k.compile()
