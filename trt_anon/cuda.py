"""What CUDA can do here, asked once, without importing any GPU package at trt_anon import time."""
from __future__ import annotations

import functools
import importlib.util


def array_module(a):
    """``cupy`` for a CuPy array, else ``numpy`` (the one switch between the two paths)."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    import numpy
    return numpy


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


def is_out_of_memory(exc: BaseException) -> bool:
    """CuPy, PyTorch and TensorRT each raise their own out-of-memory error."""
    name = type(exc).__name__
    return "OutOfMemory" in name or "out of memory" in str(exc).lower()
