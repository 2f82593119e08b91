"""Encoders for frames that live on the GPU.

``NvencEncoder``: NVENC through PyAV's h264_nvenc/hevc_nvenc fed with CUDA NV12 frames made by
DLPack from CuPy, so pixels never visit the host; PyAV muxes exactly as on the CPU path.
``GpuYuvEncoder``: for GPUs without NVENC (H100, H200): YUV 4:2:0 made on the GPU, one
device-to-host copy per batch (half the bytes of RGB), then libx264 or libx265.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from ..errors import BackendError
from .gpu_color import rgb_to_yuv420
from .pyav import PyAVEncoder

NVENC_CODECS = {"h264": "h264_nvenc", "hevc": "hevc_nvenc"}


def nvenc_available(codec: str = "h264_nvenc") -> tuple[bool, str]:
    """Open the NVENC encoder on a tiny frame: Hopper (H100/H200) has none, and says so here."""
    if codec not in av.codecs_available:
        return False, f"{codec} is not in this FFmpeg build"
    try:
        cc = av.CodecContext.create(codec, "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = 256, 256, "nv12", Fraction(1, 30)
        cc.open()
        cc.close()
        return True, ""
    except av.error.FFmpegError as exc:
        return False, (f"{codec} cannot open ({str(exc).splitlines()[0]}): this GPU has no NVENC, "
                       "or the driver does not expose its video capability")


class NvencEncoder(PyAVEncoder):
    def __init__(self, output, width, height, rate, time_base, colorspace, crf, preset, codec="h264_nvenc"):
        if width % 2 or height % 2:
            raise BackendError("NVENC needs even width and height")
        super().__init__(output, width, height, rate, time_base, colorspace, crf, preset, codec=codec)
        self.stream.codec_context.options = {"preset": "p4", "tune": "hq", "rc": "vbr", "cq": str(max(crf, 1))}
        # CUDA frames: nvenc takes the frames context that PyAV adopts from the first DLPack frame
        self.pix_fmt = self.stream.pix_fmt = "cuda"
        self.cuda_context = None  # one PyAV CudaContext for the context current here, made at the first batch

    def encode(self, frames, pts):
        import cupy as cp

        nv12 = rgb_to_yuv420(frames if isinstance(frames, cp.ndarray) else cp.stack(frames),
                             *self.colorspace, nv12=True)
        if self.cuda_context is None:  # a new primary-context wrapper per frame fails once CuPy made it active
            self.cuda_context = av.video.frame.CudaContext(primary_ctx=False, current_ctx=True)
        stream = cp.cuda.get_current_stream().ptr or 1  # DLPack: 1 = legacy default stream; CuPy refuses 0
        h = self.stream.height
        for i, t in enumerate(self._fix(pts)):
            y, uv = nv12[i, :h], nv12[i, h:].reshape(h // 2, -1, 2)
            frame = av.VideoFrame.from_dlpack((y, uv), format="nv12", width=self.stream.width, height=h,
                                              stream=stream, cuda_context=self.cuda_context)
            frame.pts, frame.time_base = t, self.time_base
            self._mux(self.stream.encode(frame))


class GpuYuvEncoder(PyAVEncoder):
    """libx264 (or libx265) fed from the GPU: one YUV download per batch (RGB for odd sizes)."""

    def __init__(self, *args, codec: str = "libx264") -> None:
        super().__init__(*args, codec=codec)
        self.name = f"{codec} (gpu yuv)"

    def encode(self, frames, pts):
        import cupy as cp

        batch = frames if isinstance(frames, cp.ndarray) else cp.stack(frames)
        if self.pix_fmt != "yuv420p":
            return super().encode(cp.asnumpy(batch), pts)
        yuv = cp.asnumpy(rgb_to_yuv420(batch, *self.colorspace))
        for img, t in zip(yuv, self._fix(pts)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="yuv420p")
            frame.colorspace, frame.color_range = self.colorspace
            frame.pts, frame.time_base = t, self.time_base
            self._mux(self.stream.encode(frame))
