"""Detector input on the GPU: area-resize, HWC->CHW, float, letterbox padding, in one kernel.

The same arithmetic as ``onnxrt.OnnxRuntimeDetector.preprocess`` (OpenCV INTER_AREA), so every
backend sees (almost) the same network input; the frames never leave the device.
"""
from __future__ import annotations

from . import centerface as cf

_SRC = r"""
extern "C" __global__ void resize_area_chw(const unsigned char* src, float* dst, int H, int W,
                                           int rh, int rw, int ih, int iw, float sy, float sx) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int b = blockIdx.z;
    if (x >= iw || y >= ih) return;
    size_t plane = (size_t)ih * iw;
    float* out = dst + (size_t)b * 3 * plane + (size_t)y * iw + x;
    if (x >= rw || y >= rh) { out[0] = 0.f; out[plane] = 0.f; out[2 * plane] = 0.f; return; }
    float y0 = y * sy, y1 = fminf((y + 1) * sy, (float)H);
    float x0 = x * sx, x1 = fminf((x + 1) * sx, (float)W);
    float r = 0.f, g = 0.f, bl = 0.f, wsum = 0.f;
    for (int yy = (int)y0; yy < (int)ceilf(y1); ++yy) {
        float wy = fminf(yy + 1.f, y1) - fmaxf((float)yy, y0);
        const unsigned char* row = src + ((size_t)b * H + yy) * (size_t)W * 3;
        for (int xx = (int)x0; xx < (int)ceilf(x1); ++xx) {
            float w = wy * (fminf(xx + 1.f, x1) - fmaxf((float)xx, x0));
            const unsigned char* p = row + (size_t)xx * 3;
            r += w * p[0]; g += w * p[1]; bl += w * p[2]; wsum += w;
        }
    }
    out[0] = r / wsum; out[plane] = g / wsum; out[2 * plane] = bl / wsum;
}
"""
_kernel = None


def preprocess(frames, geom: cf.Geometry):
    """(N, H, W, 3) uint8 CuPy -> (N, 3, in_h, in_w) float32 CuPy, 0..255 as CenterFace expects."""
    global _kernel
    import cupy as cp

    from ..cuda import device_frames

    if _kernel is None:
        _kernel = cp.RawKernel(_SRC, "resize_area_chw")
    frames = device_frames(frames)
    n = len(frames)
    out = cp.empty((n, 3, geom.in_h, geom.in_w), cp.float32)
    block = (32, 8, 1)
    grid = ((geom.in_w + 31) // 32, (geom.in_h + 7) // 8, n)
    _kernel(grid, block, (frames, out, cp.int32(geom.frame_h), cp.int32(geom.frame_w), cp.int32(geom.resized_h),
                          cp.int32(geom.resized_w), cp.int32(geom.in_h), cp.int32(geom.in_w),
                          cp.float32(geom.frame_h / geom.resized_h), cp.float32(geom.frame_w / geom.resized_w)))
    return out



def compile_kernels() -> None:
    """Compile the kernel now (NVRTC), so that a failure falls back when the stages are chosen."""
    global _kernel
    import cupy as cp

    _kernel = _kernel or cp.RawKernel(_SRC, "resize_area_chw")
    _kernel.compile()
