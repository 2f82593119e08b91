"""Stand-ins for the GPU libraries around ``strict_cupy``, each as strict about device memory.

- ``CudaTensor``: CPU PyTorch pretending to be CUDA: DLPack says ``(kDLCUDA, 0)``, every result of an
  operation on it says so too, and ``torch.from_dlpack`` of a device array gives one (``patch_torch``).
  A plain host tensor handed to CuPy is refused by ``strict_cupy.from_dlpack``; what copies a CUDA
  tensor to the host (``.cpu()``, ``.to("cpu")``, ``.item()``, ``.tolist()``, ``int()``, ``float()``,
  ``bool()``) is recorded in the ledger, and ``.numpy()`` is refused, as on CUDA.
- ``DaliOutputsOnDevice``: DALI's CPU video reader with its outputs presented as GPU tensors
  (``__cuda_array_interface__``, as DALI's ``TensorGPU`` offers); ``as_cpu()`` is a recorded download.
- ``NvencStandIn``: what FFmpeg's ``h264_nvenc`` does with CUDA frames, done by libx264: the stream
  accepts only frames made by ``VideoFrame.from_dlpack`` from CUDA tensors (checking the ``stream``
  and ``cuda_context`` arguments), reads them as the hardware would (not a host copy of the
  package's), and refuses host frames. Like FFmpeg's nvenc, which registers only ``data[0]`` and
  ``linesize[0]`` with NVENC, it reads the chroma at ``data[0] + linesize[0] * height``: an NV12
  frame whose chroma plane is anywhere else is refused (NVENC would encode whatever lies there).
"""
from __future__ import annotations

import ctypes
import itertools
import queue
import threading
import types
from pathlib import Path
from typing import Any

import av
import numpy as np
import strict_cupy
from strict_cupy import CUDA, LEDGER


# --- PyTorch ----------------------------------------------------------------------------------
def cuda_tensor_class(torch):
    """A ``torch.Tensor`` subclass that is CPU memory but reports CUDA device 0 over DLPack."""

    class CudaTensor(torch.Tensor):
        def __dlpack_device__(self) -> tuple[int, int]:
            return (CUDA, 0)

        def __dlpack__(self, *, stream=-1, **kwargs):
            _check_torch_dlpack_stream(stream)
            return self.as_subclass(torch.Tensor).__dlpack__()

        def numpy(self, *a, **k):  # a CUDA tensor cannot be viewed from the host
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")

        def _download(self, how: str):
            LEDGER.record("d2h", self.nbytes, how)
            return self.as_subclass(torch.Tensor).clone()

        def cpu(self, *a, **k):
            return self._download("torch.cpu")

        def to(self, *args, **kwargs):
            """``.to("cpu")`` (or a CPU tensor's device) is a download; ``.to("cuda")`` / a dtype stays."""
            target = args[0] if args else kwargs.get("device", kwargs.get("other"))
            if isinstance(target, CudaTensor):
                device, dtype = "cuda", target.dtype
            else:
                device, dtype, *_ = torch._C._nn._parse_to(*args, **kwargs)
                device = getattr(device, "type", device)
            if device == "cpu":
                host = self._download("torch.to(cpu)")
                return host if dtype is None else host.to(dtype)
            return self if dtype in (None, self.dtype) else super().to(dtype)

        def cuda(self, *a, **k):
            return self

        # each copies the value to the host and waits for the stream (Tensor.item on CUDA)
        def item(self):
            return self._download("torch.item").item()

        def tolist(self):
            return self._download("torch.tolist").tolist()

        def __int__(self) -> int:
            return int(self._download("torch.int"))

        def __index__(self) -> int:
            return self._download("torch.index").__index__()

        def __float__(self) -> float:
            return float(self._download("torch.float"))

        def __bool__(self) -> bool:
            return bool(self._download("torch.bool"))

    return CudaTensor


def _check_torch_dlpack_stream(stream) -> None:
    """``torch.Tensor.__dlpack__`` on CUDA (PyTorch 2.13): an int or None; 2 (per-thread default
    stream) and 0 are refused; -1 means no synchronisation, None and 1 the default stream."""
    if stream is not None and type(stream) is not int:
        raise TypeError("stream must be ``int`` or ``none``")
    if stream == 2:
        raise BufferError("per-thread default stream is not supported.")
    if stream == 0:
        raise AssertionError(f"unsupported stream on CUDA: {stream}.")


def patch_torch(monkeypatch, torch) -> type:
    """``torch.from_dlpack`` of a CUDA producer gives a ``CudaTensor`` (asking with ``stream=1``,
    the legacy default stream, as PyTorch does); host producers give plain host tensors."""
    CudaTensor = cuda_tensor_class(torch)
    real = torch.from_dlpack

    def from_dlpack(x):
        if hasattr(x, "__dlpack_device__") and x.__dlpack_device__()[0] == CUDA:
            return real(x.__dlpack__(stream=1)).as_subclass(CudaTensor)
        return real(x)

    monkeypatch.setattr(torch, "from_dlpack", from_dlpack)
    monkeypatch.setattr(torch.utils.dlpack, "from_dlpack", from_dlpack)
    return CudaTensor


# --- DALI -------------------------------------------------------------------------------------
class _DeviceTensor:
    """DALI ``TensorGPU`` as CuPy sees it: ``__cuda_array_interface__`` and DLPack, no host view."""

    def __init__(self, host: np.ndarray) -> None:
        self._mem = host

    @property
    def __cuda_array_interface__(self) -> dict:
        return strict_cupy.ndarray(self._mem).__cuda_array_interface__

    def __dlpack__(self, *, stream=None, **kwargs):
        strict_cupy.check_dlpack_standard_stream(stream)
        return self._mem.__dlpack__()

    def __dlpack_device__(self):
        return (CUDA, 0)

    def shape(self):
        return list(self._mem.shape)

    def __array__(self, *a, **k):
        raise TypeError("DALI TensorGPU has no host view: call as_cpu()")


class _DeviceTensorList:
    """DALI ``TensorListGPU``: ``as_tensor()`` stays on the device, ``as_cpu()`` is a download."""

    def __init__(self, host_list) -> None:
        self._host = host_list

    def as_tensor(self) -> _DeviceTensor:
        return _DeviceTensor(np.asarray(self._host.as_tensor()))

    def as_cpu(self):
        LEDGER.record("d2h", np.asarray(self._host.as_tensor()).nbytes, "dali.as_cpu")
        return self._host

    def __len__(self) -> int:
        return len(self._host)

    def __getattr__(self, name: str):
        if name in ("layout", "is_dense_tensor", "shape"):
            return getattr(self._host, name)
        raise AttributeError(f"DALI stand-in: TensorListGPU.{name} not emulated")


class DaliOutputsOnDevice:
    """A built DALI pipeline whose first output (the frames) is presented as GPU memory.

    With ``ycbcr`` (a package that converts DALI's YCbCr output itself, as it must for BT.709), the
    frames are the stream's own YCbCr at full chroma resolution, read by PyAV: what NVDEC and DALI's
    GPU reader give with ``image_type=YCbCr``, which the CPU reader cannot produce."""

    def __init__(self, pipe, ycbcr: Path | None = None) -> None:
        self._pipe = pipe
        self._ycbcr = _yuv444(ycbcr) if ycbcr else None

    def run(self):
        video, numbers, *rest = self._pipe.run()
        if self._ycbcr is not None:
            nums = np.asarray(numbers.as_cpu().as_array()).reshape(-1)
            frames = np.zeros_like(np.asarray(video.as_tensor()))
            for i, k in enumerate(nums):
                if k >= 0:
                    frames[0, i] = self._ycbcr[k]
            video = types.SimpleNamespace(as_tensor=lambda: frames, __len__=lambda: 1)
        return (_DeviceTensorList(video), numbers, *rest)

    def __getattr__(self, name: str):
        return getattr(self._pipe, name)


def _yuv444(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="yuv444p").transpose(1, 2, 0) for f in c.decode(video=0)])


def dali_decoder_on_device(path, batch_size: int, time_base, colorspace=None):
    """trt_anon's ``DaliDecoder`` on DALI's CPU reader (VP9), its frames arriving as device arrays:
    exactly what the decoder class does with NVDEC output, minus the decoding itself."""
    import inspect

    import cupy

    from trt_anon.decode.dali import DaliDecoder
    from trt_anon.encode import gpu_color

    kwargs = {"colorspace": colorspace} if "colorspace" in inspect.signature(DaliDecoder).parameters else {}
    dec = DaliDecoder(path, batch_size, time_base, device="cpu", **kwargs)
    dec.xp = cupy
    dec.pipe = DaliOutputsOnDevice(dec.pipe, ycbcr=Path(path) if hasattr(gpu_color, "ycc_to_rgb") else None)
    return dec


# --- PyNvVideoCodec ---------------------------------------------------------------------------
class _NvFrame:
    """A decoded frame in device memory, as PyNvVideoCodec's ``use_device_memory=True`` gives it:
    native 8-bit 4:2:0 is NV12, one (H * 3 / 2, W) buffer (luma, then Cb Cr interleaved)."""

    def __init__(self, nv12: np.ndarray) -> None:
        self._mem = nv12

    def __dlpack__(self, *, stream=None, **kwargs):
        strict_cupy.check_dlpack_standard_stream(stream)
        return self._mem.__dlpack__()

    def __dlpack_device__(self):
        return (CUDA, 0)


class NvLog:
    """What the PyNvVideoCodec stand-in saw: which decoder was made, the frames asked past the end of the file
    (the real one logs ``INVALID INDEX n`` for each), the thread of each request, and whether ``end()`` ran."""

    def __init__(self) -> None:
        self.kind: str | None = None
        self.past_end: list[int] = []
        self.threads: list[str] = []
        self.ended = False


def pynvvideocodec_module(threaded: bool = True) -> types.ModuleType:
    """``PyNvVideoCodec`` whose decoders decode with PyAV (playing NVDEC) into native NV12 frames offered only
    as CUDA DLPack tensors; ``threaded``: with ``ThreadedDecoder`` (2.x), else ``SimpleDecoder`` only. As the
    real ones, a frame returned is the decoder's own surface, valid until the next request: the next request
    scribbles over it here, so a frame read late shows. Asking past the end returns fewer frames and is noted
    in ``module.log``. Their RGB output is refused here: the real one converts untagged video as BT.709 and
    ignores full range (the Video Codec SDK's ColorSpace.cu), which the encoder would not invert.
    ``cuda_stream`` must be a stream handle (an int), as the decoders pass it to their C++ side."""
    nvc = types.ModuleType("PyNvVideoCodec")
    nvc.OutputColorType = types.SimpleNamespace(RGB="rgb", NATIVE="native")
    log = nvc.log = NvLog()

    class SimpleDecoder:
        def __init__(self, path: str, gpu_id: int = 0, cuda_context: int = 0, cuda_stream: int = 0,
                     use_device_memory: bool = True, output_color_type="native", **kwargs) -> None:
            assert use_device_memory and output_color_type == "native", "the GPU path wants NV12 in device memory"
            assert isinstance(cuda_stream, int), "cuda_stream is a CUDA stream handle"
            log.kind = type(self).__name__
            self.cuda_stream = cuda_stream
            with av.open(path) as c:
                self._count = sum(1 for p in c.demux(video=0) if p.size)
            self._container = av.open(path)
            self._frames = (f.reformat(format="nv12").to_ndarray() for f in self._container.decode(video=0))
            self._next, self._lent = 0, []

        def get_batch_frames(self, n: int) -> list[_NvFrame]:
            log.threads.append(threading.current_thread().name)
            for mem in self._lent:
                mem[...] = 0xAB          # the surfaces lent last time are the decoder's again
            log.past_end += list(range(max(self._next, self._count), self._next + n))
            due = max(0, min(n, self._count - self._next))
            out = [np.ascontiguousarray(f) for f in itertools.islice(self._frames, due)]
            self._next += n
            self._lent = out
            return [_NvFrame(f) for f in out]

    class ThreadedDecoder(SimpleDecoder):
        """Decodes ``buffer_size`` frames ahead in a thread of its own; ``end()`` stops it."""

        def __init__(self, path: str, buffer_size: int, **kwargs) -> None:
            super().__init__(path, **kwargs)
            self._ready: queue.Queue = queue.Queue(maxsize=buffer_size)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._decode, daemon=True)
            self._thread.start()

        def _decode(self) -> None:
            for f in self._frames:
                while not self._stop.is_set():
                    try:
                        self._ready.put(f, timeout=0.05)
                        break
                    except queue.Full:
                        pass
                if self._stop.is_set():
                    return

        def get_batch_frames(self, n: int) -> list[_NvFrame]:
            log.threads.append(threading.current_thread().name)
            for mem in self._lent:
                mem[...] = 0xAB
            log.past_end += list(range(max(self._next, self._count), self._next + n))
            out = []
            while len(out) < min(n, self._count - self._next):
                out.append(np.ascontiguousarray(self._ready.get()))
            self._next += n
            self._lent = out
            return [_NvFrame(f) for f in out]

        def end(self) -> None:
            log.ended = True
            self._stop.set()

    nvc.SimpleDecoder = SimpleDecoder
    if threaded:
        nvc.ThreadedDecoder = ThreadedDecoder
    return nvc


# --- NVENC ------------------------------------------------------------------------------------
class _CudaFrame:
    """What ``VideoFrame.from_dlpack`` returns for CUDA planes: a hardware frame (format "cuda") whose
    ``data``/``linesize`` are PyAV's: each plane's own pointer and row pitch in bytes."""

    format = types.SimpleNamespace(name="cuda")

    def __init__(self, mems: tuple, width: int, height: int, context: Any) -> None:
        self.mems = mems                     # the planes' memory, kept alive as PyAV's AVBufferRefs do
        self.data = tuple(m.ctypes.data for m in mems)
        self.linesize = tuple(m.strides[0] for m in mems)
        self.width, self.height, self.context = width, height, context
        self.pts: int | None = None
        self.time_base = None


class NvencLog:
    """What the NVENC stand-in saw: frames, the ``stream`` values and ``cuda_context`` objects passed."""

    def __init__(self) -> None:
        self.frames = 0
        self.streams: list = []
        self.contexts: list = []


def from_dlpack_standin(log: NvencLog):
    """``av.VideoFrame.from_dlpack`` for CUDA tensors, with PyAV 18.1's argument checks: each plane
    asked with ``__dlpack__(stream=stream)`` (``__dlpack__()`` when None), planes contiguous in their
    last dimension, luma (H, W), chroma (H/2, W) or (H/2, W/2, 2)."""

    def from_dlpack(planes, format: str = "nv12", width: int = 0, height: int = 0, stream=None, device_id=None,
                    primary_ctx=None, cuda_context=None, current_ctx=None):
        assert format == "nv12" and len(planes) == 2, (format, len(planes))
        mems = []
        for p in planes:
            dev = p.__dlpack_device__()
            if dev != (CUDA, 0):
                raise AssertionError(f"NVENC was given a plane on DLPack device {dev}, not CUDA memory")
            capsule = p.__dlpack__(stream=stream) if stream is not None else p.__dlpack__()
            mems.append(np.from_dlpack(strict_cupy._Capsule(capsule)))
        y, uv = mems
        if y.shape != (height, width):
            raise ValueError("plane 0 shape does not match width/height")
        if uv.shape not in ((height // 2, width), (height // 2, width // 2, 2)):
            raise ValueError("plane 1 must have shape (H/2, W) or (H/2, W/2, 2)")
        if y.strides[1] != 1 or uv.strides[-1] != 1 or (uv.ndim == 3 and uv.strides[1] != 2):
            raise ValueError("planes must be contiguous in the last dimension")
        if cuda_context is not None and not isinstance(cuda_context, av.video.frame.CudaContext):
            raise TypeError("cuda_context must be a CudaContext")
        log.streams.append(stream)
        log.contexts.append(cuda_context)
        return _CudaFrame((y, uv), width, height, cuda_context)

    return from_dlpack


def nvenc_reads(frame: _CudaFrame) -> np.ndarray:
    """The NV12 picture NVENC encodes from a CUDA frame: FFmpeg's nvenc registers ``data[0]`` with
    pitch ``linesize[0]`` (NV_ENC_REGISTER_RESOURCE) and NVENC finds the chroma rows right after the
    luma rows, at ``data[0] + linesize[0] * height``; ``data[1]`` is never looked at."""
    h, w, pitch = frame.height, frame.width, frame.linesize[0]
    chroma_at = frame.data[0] + pitch * h
    if frame.data[1] != chroma_at or frame.linesize[1] != pitch:
        raise AssertionError(
            f"NVENC reads NV12 chroma at data[0] + linesize[0]*height (0x{chroma_at:x}, pitch {pitch}); this "
            f"frame's chroma plane is at 0x{frame.data[1]:x} (pitch {frame.linesize[1]}): NVENC would encode "
            "whatever memory lies there. Hand it luma and chroma of one buffer, chroma right after luma.")
    rows = h + h // 2                   # the span read is exactly the two planes' memory, checked above
    buf = np.frombuffer((ctypes.c_uint8 * (pitch * (rows - 1) + w)).from_address(frame.data[0]), np.uint8)
    return np.lib.stride_tricks.as_strided(buf, (rows, w), (pitch, 1)).copy()


class _StreamStandIn:
    """An ``h264_nvenc`` output stream: a libx264 stream (NV12) that takes only CUDA frames."""

    def __init__(self, real, log: NvencLog) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_log", log)
        object.__setattr__(self, "hw_pix_fmt", None)
        object.__setattr__(self, "nvenc_options", {})
        object.__setattr__(self, "codec_context", _CodecContextStandIn(real.codec_context, self))

    def encode(self, frame=None):
        if frame is None:
            return self._real.encode(None)
        if not isinstance(frame, _CudaFrame):
            raise AssertionError(f"NVENC stand-in was given {type(frame).__name__}, not a CUDA frame")
        assert self.hw_pix_fmt == "cuda", "an NVENC stream fed CUDA frames must have pix_fmt 'cuda'"
        sw = av.VideoFrame.from_ndarray(nvenc_reads(frame), format="nv12")  # NVENC reads device memory itself
        self._log.frames += 1
        cc = self._real.codec_context
        sw.colorspace, sw.color_range = cc.colorspace, cc.color_range
        sw.pts, sw.time_base = frame.pts, frame.time_base
        return self._real.encode(sw)

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def __setattr__(self, name: str, value) -> None:
        if name == "pix_fmt" and value == "cuda":
            object.__setattr__(self, "hw_pix_fmt", value)
        else:
            setattr(self._real, name, value)


class _CodecContextStandIn:
    def __init__(self, real, stream: _StreamStandIn) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_stream", stream)

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def __setattr__(self, name: str, value) -> None:
        if name == "options":               # NVENC's own options (preset p4, rc, cq): recorded only
            self._stream.nvenc_options.update(value)
        elif name == "pix_fmt" and value == "cuda":
            object.__setattr__(self._stream, "hw_pix_fmt", value)
        else:
            setattr(self._real, name, value)


class _OutputStandIn:
    """The output container, with ``add_stream("h264_nvenc")`` served by ``_StreamStandIn``."""

    def __init__(self, real, log: NvencLog) -> None:
        self._real, self._log = real, log

    def add_stream(self, codec: str, rate=None, options=None, **kwargs):
        if codec not in ("h264_nvenc", "hevc_nvenc"):
            return self._real.add_stream(codec, rate=rate, options=options, **kwargs)
        real = self._real.add_stream("libx264" if codec == "h264_nvenc" else "libx265", rate=rate)
        real.pix_fmt = "nv12"
        return _StreamStandIn(real, self._log)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def install_nvenc(monkeypatch) -> NvencLog:
    """Make this machine look like it has NVENC: the probe says yes, PyAV's ``from_dlpack`` and the
    output container's ``h264_nvenc`` stream are the stand-ins above."""
    from trt_anon import sink
    from trt_anon.encode import gpu

    log = NvencLog()
    monkeypatch.setattr(gpu, "nvenc_available", lambda codec="h264_nvenc": (True, ""))
    video_frame = types.SimpleNamespace(from_dlpack=from_dlpack_standin(log),
                                        from_ndarray=av.VideoFrame.from_ndarray)
    monkeypatch.setattr(gpu, "av", _Module(av, VideoFrame=video_frame))
    monkeypatch.setattr(sink, "av", _Module(av, open=lambda *a, **k: _OutputStandIn(av.open(*a, **k), log)))
    return log


class _Module(types.ModuleType):
    """A module that is ``base`` except for the names given."""

    def __init__(self, base: types.ModuleType, **overrides) -> None:
        super().__init__(base.__name__)
        self.__dict__.update(overrides)
        self._base = base

    def __getattr__(self, name: str):
        return getattr(self._base, name)
