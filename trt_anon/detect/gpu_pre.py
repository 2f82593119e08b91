"""Detector input on the GPU: area-resize, letterbox padding and the network's layout, in one kernel.

The same arithmetic as ``onnxrt.OnnxRuntimeDetector.preprocess`` (OpenCV INTER_AREA), so every
backend sees (almost) the same network input; the frames never leave the device. Two layouts:
float32 NCHW (TensorRT's input binding) and FP16 NHWC, which is what a ``channels_last`` FP16
network reads (PyTorch sees it as NCHW with channels-last strides, without a copy or a cast).
"""
from __future__ import annotations

from . import centerface as cf

_SRC = r"""
// the area average of one output pixel (x, y) of frame b, 0 outside the resized picture
__device__ void area_rgb(const unsigned char* src, int b, int x, int y, int H, int W, int rh, int rw,
                         float sy, float sx, float* rgb) {
    rgb[0] = 0.f; rgb[1] = 0.f; rgb[2] = 0.f;
    if (x >= rw || y >= rh) return;
    float y0 = y * sy, y1 = fminf((y + 1) * sy, (float)H);
    float x0 = x * sx, x1 = fminf((x + 1) * sx, (float)W);
    float wsum = 0.f;
    for (int yy = (int)y0; yy < (int)ceilf(y1); ++yy) {
        float wy = fminf(yy + 1.f, y1) - fmaxf((float)yy, y0);
        const unsigned char* row = src + ((size_t)b * H + yy) * (size_t)W * 3;
        for (int xx = (int)x0; xx < (int)ceilf(x1); ++xx) {
            float w = wy * (fminf(xx + 1.f, x1) - fmaxf((float)xx, x0));
            const unsigned char* p = row + (size_t)xx * 3;
            rgb[0] += w * p[0]; rgb[1] += w * p[1]; rgb[2] += w * p[2]; wsum += w;
        }
    }
    rgb[0] /= wsum; rgb[1] /= wsum; rgb[2] /= wsum;
}

// IEEE binary16 bits of a float, rounded to nearest even (as __float2half_rn), without cuda_fp16.h
__device__ unsigned short half_bits(float f) {
    union { float f; unsigned int u; } v;
    v.f = f;
    unsigned int sign = (v.u >> 16) & 0x8000u, mant = v.u & 0x7fffffu;
    int e = (int)((v.u >> 23) & 0xffu) - 112;               // rebias 127 -> 15
    if (e >= 31) return (unsigned short)(sign | 0x7c00u);   // too large: infinity
    unsigned int h, rem, halfway;
    if (e <= 0) {                                           // subnormal in FP16, or zero
        if (e < -10) return (unsigned short)sign;
        mant |= 0x800000u;
        int shift = 14 - e;
        h = mant >> shift; rem = mant & ((1u << shift) - 1u); halfway = 1u << (shift - 1);
    } else {
        h = ((unsigned int)e << 10) | (mant >> 13); rem = mant & 0x1fffu; halfway = 0x1000u;
    }
    if (rem > halfway || (rem == halfway && (h & 1u))) h += 1;  // a carry into the exponent is right too
    return (unsigned short)(sign | h);
}

// one thread per output pixel; nhwc_half: dst is FP16 NHWC (the PyTorch detector's input), else float NCHW
extern "C" __global__ void resize_area(const unsigned char* src, void* dst, int H, int W, int rh, int rw,
                                       int ih, int iw, float sy, float sx, int nhwc_half) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int b = blockIdx.z;
    if (x >= iw || y >= ih) return;
    float rgb[3];
    area_rgb(src, b, x, y, H, W, rh, rw, sy, sx, rgb);
    if (nhwc_half) {
        unsigned short* out = (unsigned short*)dst + (((size_t)b * ih + y) * iw + x) * 3;
        out[0] = half_bits(rgb[0]); out[1] = half_bits(rgb[1]); out[2] = half_bits(rgb[2]);
    } else {
        size_t plane = (size_t)ih * iw;
        float* out = (float*)dst + (size_t)b * 3 * plane + (size_t)y * iw + x;
        out[0] = rgb[0]; out[plane] = rgb[1]; out[2 * plane] = rgb[2];
    }
}
"""
LAYOUTS = ("nchw", "nhwc-fp16")
_kernel = None


def preprocess(frames, geom: cf.Geometry, out=None, layout: str = "nchw"):
    """(N, H, W, 3) uint8 CuPy -> the network input, 0..255 as CenterFace expects: ``"nchw"`` float32
    (N, 3, in_h, in_w), or ``"nhwc-fp16"`` float16 (N, in_h, in_w, 3). ``out``: a C-contiguous array of
    that shape and type to write into (a detector's fixed input buffer), else a new one."""
    global _kernel
    import cupy as cp

    from ..cuda import device_frames

    if layout not in LAYOUTS:
        raise ValueError(f"preprocess: layout is one of {', '.join(LAYOUTS)}, not {layout!r}")
    if _kernel is None:
        _kernel = cp.RawKernel(_SRC, "resize_area")
    frames = device_frames(frames)
    n = len(frames)
    shape, dtype = ((n, 3, geom.in_h, geom.in_w), cp.float32) if layout == "nchw" else \
        ((n, geom.in_h, geom.in_w, 3), cp.float16)
    if out is None:
        out = cp.empty(shape, dtype)
    elif tuple(out.shape) != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"preprocess: out must be C-contiguous {dtype.__name__} {shape}, got {out.dtype} "
                         f"{tuple(out.shape)}")
    block = (32, 8, 1)
    grid = ((geom.in_w + 31) // 32, (geom.in_h + 7) // 8, n)
    _kernel(grid, block, (frames, out, cp.int32(geom.frame_h), cp.int32(geom.frame_w), cp.int32(geom.resized_h),
                          cp.int32(geom.resized_w), cp.int32(geom.in_h), cp.int32(geom.in_w),
                          cp.float32(geom.frame_h / geom.resized_h), cp.float32(geom.frame_w / geom.resized_w),
                          cp.int32(layout == "nhwc-fp16")))
    return out


def compile_kernels() -> None:
    """Compile the kernel now (NVRTC), so that a failure falls back when the stages are chosen."""
    global _kernel
    import cupy as cp

    _kernel = _kernel or cp.RawKernel(_SRC, "resize_area")
    _kernel.compile()
