"""What CUDA can do here, asked once, without importing any GPU package at trt_anon import time."""
from __future__ import annotations

import contextlib
import functools
import importlib.util

from .errors import BackendError


def array_module(a):
    """``cupy`` for a CuPy array, else ``numpy`` (the one switch between the two paths)."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    import numpy
    return numpy


def device_frames(frames):
    """A batch as our CUDA kernels take it: one C-contiguous (N, H, W, 3) uint8 CuPy array.

    The kernels take ``unsigned char*`` and index it as a dense batch; CuPy checks neither the
    dtype nor the layout of what it passes, so a uint16 or strided batch would give silently
    wrong pixels. A list of frames is stacked; a strided array is copied; anything else is refused.
    """
    import cupy as cp

    batch = cp.ascontiguousarray(frames if isinstance(frames, cp.ndarray) else cp.stack(frames))
    if batch.dtype != cp.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise BackendError(f"the GPU stages take 8-bit RGB batches, got {batch.dtype} {tuple(batch.shape)}")
    return batch


def free_memory() -> None:
    """Give CuPy's pools, PyTorch's cache and DALI's pools back to the driver (before retrying after
    an out-of-memory error; the arrays and pipelines must be unreachable by then, so collect garbage
    first)."""
    import gc
    import sys

    gc.collect()
    dali = sys.modules.get("nvidia.dali.backend")
    if dali is not None:
        dali.ReleaseUnusedMemory()
    if "cupy" in sys.modules:
        cupy = sys.modules["cupy"]
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """A CUDA GPU that CuPy can use (CuPy is the glue of every GPU stage)."""
    if not has("cupy"):
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@functools.lru_cache(maxsize=None)
def device() -> dict:
    """Name and compute capability of GPU 0, e.g. {'name': 'NVIDIA H100 80GB HBM3', 'cc': '90'}."""
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"name": name, "cc": f"{props['major']}{props['minor']}", "memory": int(props["totalGlobalMem"])}


def free_bytes() -> int:
    """Device memory free on GPU 0 now (other processes' use counted out)."""
    import cupy
    return int(cupy.cuda.runtime.memGetInfo()[0])


def is_out_of_memory(exc: BaseException) -> bool:
    """CuPy, PyTorch and DALI each raise their own out-of-memory error; TensorRT's reaches us as a
    ``DetectorError`` that quotes its log ("out of memory")."""
    name = type(exc).__name__
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()


def dlpack_stream(stream_ptr: int) -> int:
    """The ``stream`` to pass to ``__dlpack__`` for a consumer working on CUDA stream ``stream_ptr``.

    The DLPack protocol forbids 0 and wants 1 for the legacy default stream, whose pointer is 0
    (PyTorch refuses 0; CuPy 13.6 to 14.2 warn and take it as the legacy stream); any other stream
    goes by its pointer (2 is the per-thread default stream).
    """
    return stream_ptr or 1


@contextlib.contextmanager
def on_stream(stream):
    """Run the block on a stage's own ``stream`` (``cupy.cuda.Stream(non_blocking=True)``).

    A detector queues preprocessing, inference and candidate decoding on it in order, and the NVENC
    encoder its colour conversion and FFmpeg's NVENC input, so none of them needs a
    synchronisation, and none joins the legacy default stream's device-wide ordering. It first
    waits, on the GPU, for what the caller's stream already queued (the kernels that made, rotated
    or redacted the frames): no host wait.
    """
    import cupy as cp

    stream.wait_event(cp.cuda.get_current_stream().record())
    with stream:
        yield stream
