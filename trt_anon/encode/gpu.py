"""Encoders for frames that live on the GPU.

``NvencEncoder``: NVENC through PyAV's h264_nvenc/hevc_nvenc fed with CUDA NV12 frames made by
DLPack from CuPy, so pixels never visit the host; PyAV muxes exactly as on the CPU path.
``GpuYuvEncoder``: for GPUs without NVENC (H100, H200): YUV 4:2:0 made on the GPU, one
device-to-host copy per batch (half the bytes of RGB), then libx264 or libx265.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import av
import numpy as np

from ..errors import BackendError
from .gpu_color import rgb_to_yuv420
from .pyav import PyAVEncoder


@functools.lru_cache(maxsize=None)
def nvenc_available(codec: str = "h264_nvenc") -> tuple[bool, str]:
    """Open the NVENC encoder on a tiny frame: Hopper (H100/H200) has none, and says so here.
    Asked once per codec and process: a folder of files does not probe the driver for each."""
    if codec not in av.codecs_available:
        return False, f"{codec} is not in this FFmpeg build"
    if tuple(int(v) for v in av.__version__.split(".")[:2]) < (18, 1):  # pyproject: [gpu] needs av>=18.1
        return False, f"PyAV {av.__version__} cannot hand GPU frames to NVENC (18.1 can)"
    try:  # PyAV has no CodecContext.close() since 14: the context is freed with the object
        cc = av.CodecContext.create(codec, "w")
        cc.width, cc.height, cc.pix_fmt, cc.time_base = 256, 256, "nv12", Fraction(1, 30)
        cc.open()
        return True, ""
    except av.error.FFmpegError as exc:  # no CUDA driver or NVENC: PermissionError/ExternalError etc.
        return False, (f"{codec} cannot open ({str(exc).splitlines()[0]}): this GPU has no NVENC, "
                       "or the driver does not expose its video capability")


def cuda_context(device_id: int, stream_ptr: int):
    """One PyAV ``CudaContext`` per encoder, wrapping the CUDA context current on this thread.

    CuPy, DALI and PyTorch use the runtime API's primary context, which is active by then with the
    runtime's flags; a primary-context wrapper (PyAV's default, one per ``from_dlpack`` call) asks
    FFmpeg to set other flags and fails ("Primary context already active with incompatible
    flags"). ``current_ctx`` takes the context as it is: call it after a CuPy kernel ran on this
    thread, so that context is current here. ``cuda_stream`` (PyAV 18.1) has FFmpeg queue NVENC's
    input on our stream, after the kernel that wrote the frames, with no host wait.
    """
    from av.video.frame import CudaContext

    return CudaContext(device_id=device_id, primary_ctx=False, current_ctx=True, cuda_stream=stream_ptr)


class NvencEncoder(PyAVEncoder):
    """NV12 made on the GPU and handed to NVENC as CUDA frames by DLPack: no host copy at all."""

    def __init__(self, output, width, height, rate, time_base, colorspace, crf, preset, codec="h264_nvenc"):
        if width % 2 or height % 2:
            raise BackendError("NVENC needs even width and height")
        super().__init__(output, width, height, rate, time_base, colorspace, crf, preset, codec=codec)
        cc = self.stream.codec_context
        cc.options = {**cc.options, "preset": "p4", "tune": "hq", "rc": "vbr", "cq": str(max(crf, 1))}
        # CUDA frames: nvenc takes the frames context that PyAV adopts from the first DLPack frame
        self.pix_fmt = self.stream.pix_fmt = "cuda"
        self.cuda_stream = self.cuda_context = None
        self.in_flight = None  # (event, arrays) of the last batch: its memory must not be reused before the event

    def encode(self, frames, pts):
        import cupy as cp

        from .. import cuda

        if self.cuda_stream is None:
            self.cuda_stream = cp.cuda.Stream(non_blocking=True)
        self._release()
        with cuda.on_stream(self.cuda_stream) as stream:  # after the redaction queued on the caller's stream
            nv12 = rgb_to_yuv420(frames, *self.colorspace, nv12=True)
            if self.cuda_context is None:
                self.cuda_context = cuda_context(cp.cuda.Device().id, stream.ptr)
            h = self.stream.height
            for i, t in enumerate(self._times(pts)):
                y, uv = nv12[i, :h], nv12[i, h:].reshape(h // 2, -1, 2)
                frame = av.VideoFrame.from_dlpack((y, uv), format="nv12", width=self.stream.width, height=h,
                                                  stream=cuda.dlpack_stream(stream.ptr),
                                                  cuda_context=self.cuda_context)
                frame.pts, frame.time_base = t, self.frame_time_base
                self._mux(self.stream.encode(frame))
            # CuPy gives freed memory back to its pool at once, without waiting for other streams: the
            # caller's batch (allocated on its stream) and our NV12 stay referenced until this stream is
            # past them, or the next batch could be written where NVENC is still reading
            self.in_flight = (stream.record(), (frames, nv12))

    def _release(self) -> None:
        if self.in_flight is not None:
            self.in_flight[0].synchronize()  # long done by the next batch: no stall in practice
            self.in_flight = None

    def close(self) -> None:
        super().close()  # NVENC's flush still reads the frames it holds
        self._release()


class GpuYuvEncoder(PyAVEncoder):
    """libx264 (or libx265) fed from the GPU: one YUV download per batch (RGB for odd sizes).

    Without NVENC (H100/H200) this encoder is the end-to-end wall, so it must use every core:
    ``thread_count=0`` is passed to x264 as its ``i_threads`` = auto (1.5 frame threads per core,
    plus lookahead), frame-threaded as ``thread_type`` is not slice-only; x265 sizes its pool to
    the machine. PyAV sets 0 by default; it is set here so that it stays so.
    """

    def __init__(self, *args, codec: str = "libx264") -> None:
        super().__init__(*args, codec=codec)
        self.stream.codec_context.thread_count = 0
        self.name = f"{codec} (gpu yuv)"

    def encode(self, frames, pts):
        import cupy as cp

        from ..cuda import device_frames

        batch = device_frames(frames)
        if self.pix_fmt != "yuv420p" or self.stream.width % 2 or self.stream.height % 2:  # odd: SVT-AV1's 4:2:0
            return super().encode(cp.asnumpy(batch), pts)
        yuv = cp.asnumpy(rgb_to_yuv420(batch, *self.colorspace))
        for img, t in zip(yuv, self._times(pts)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="yuv420p")
            frame.colorspace, frame.color_range = self.colorspace
            frame.pts, frame.time_base = t, self.frame_time_base
            self._mux(self.stream.encode(frame))
