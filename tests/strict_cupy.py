"""A strict stand-in for ``cupy``: device arrays that refuse to become host arrays by accident.

The older rehearsal let NumPy play CuPy, so a host call on a "device" array passed unseen. Here a
device array wraps a NumPy array (the emulated device memory) but behaves as CuPy does where it
matters for "pixels never visit the host":

- ``np.asarray(dev)`` / ``np.array(dev)`` raise ``TypeError`` (CuPy's ``__array__``);
- a NumPy function or ufunc on device arrays runs only as CuPy's own function of that name
  (``__array_function__`` / ``__array_ufunc__`` look it up in ``cupy``): one that CuPy lacks
  (``np.insert``, ``np.spacing``, ...) raises ``TypeError`` as with CuPy, and so does mixing a
  device array with a NumPy array;
- a NumPy array passed as a kernel pointer argument is refused (CuPy raises for it too);
- explicit transfers (``.get()``, ``cupy.asnumpy``, ``cupy.asarray(host)``, ``int()``/``float()``/
  ``bool()``, ``.item()``/``.tolist()``, ``repr``/``str``/``format``, host arrays used as indices or
  assigned into device arrays) are recorded in ``LEDGER`` with their direction, size, how and the
  package line that asked for them;
- DLPack keeps the device tag ``(kDLCUDA, 0)`` and checks the ``stream`` argument as CuPy 13.6 to
  14.2 do (0 is taken as the legacy default stream, with CuPy's warning; a negative or non-integer
  stream is refused); ``__cuda_array_interface__`` objects are taken without a copy;
- ``RawKernel`` runs the real kernel source through ``tests/cuda_emu.py``.

Only the CuPy API the package uses is implemented; anything else raises ``AttributeError`` naming
it, so a new call fails here loudly instead of silently running on NumPy.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
import traceback
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from cuda_emu import RawKernel as _EmulatedKernel

CUDA = 2      # DLPack's kDLCUDA
CPU = 1       # kDLCPU
IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy "
            "array explicitly.")                                   # CuPy's own message


@dataclass
class Transfer:
    """One copy between host and device: ``d2h`` or ``h2d``, bytes, how, and who asked."""

    direction: str
    nbytes: int
    how: str
    where: str


@dataclass
class Ledger:
    """Every host<->device copy made through the stand-in, in order (thread-safe)."""

    transfers: list[Transfer] = field(default_factory=list)
    device_copies: int = 0       # device-to-device copies (cupy.stack, .copy(), ...): not transfers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, direction: str, nbytes: int, how: str) -> None:
        with self.lock:
            self.transfers.append(Transfer(direction, int(nbytes), how, _caller()))

    def d2h(self, at_least: int = 0) -> list[Transfer]:
        return [t for t in self.transfers if t.direction == "d2h" and t.nbytes >= at_least]

    def h2d(self, at_least: int = 0) -> list[Transfer]:
        return [t for t in self.transfers if t.direction == "h2d" and t.nbytes >= at_least]

    def clear(self) -> None:
        with self.lock:
            self.transfers.clear()
            self.device_copies = 0


LEDGER = Ledger()


def _caller() -> str:
    """The innermost line outside the stand-ins, NumPy and the standard library: who asked."""
    skip = ("strict_cupy.py", "gpu_standins.py")
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = Path(frame.filename)
        if path.name not in skip and "site-packages" not in path.parts and not frame.filename.startswith(sys.prefix) \
                and not frame.filename.startswith(sys.base_prefix):
            return f"{path.name}:{frame.lineno} {frame.line}"
    return "?"


STREAM_0 = ("Stream 0 is passed from a library that you are converting to; CuPy assumes 0 as a legacy default "
            "stream. Please report this problem to the library as this violates the DLPack protocol.")  # CuPy's


def _check_dlpack_stream(stream: Any) -> None:
    """``cupy.ndarray.__dlpack__`` on CUDA (CuPy 13.6 to 14.2): None, -1, 1, 2 or a stream pointer;
    0 violates the DLPack protocol but is taken, with a warning, as the legacy default stream."""
    if stream is not None and (not isinstance(stream, int) or stream < -1):
        raise ValueError(f"On CUDA, the valid stream for the DLPack protocol is -1, 1, 2, or any larger value, "
                         f"but {stream} was provided")
    if stream == 0:
        warnings.warn(STREAM_0)


def check_dlpack_standard_stream(stream: Any) -> None:
    """The DLPack standard on CUDA (Python array API ``__dlpack__``): None, -1, 1, 2 or a stream
    pointer; 0 is ambiguous and not allowed. For producers other than CuPy and PyTorch."""
    if stream is not None and (not isinstance(stream, int) or stream < -1 or stream == 0):
        raise ValueError(f"On CUDA, the valid stream for the DLPack protocol is -1, 1, 2, or any larger value, "
                         f"but {stream} was provided")


class _Flags:
    def __init__(self, a: np.ndarray) -> None:
        self.c_contiguous, self.f_contiguous, self.owndata = a.flags.c_contiguous, a.flags.f_contiguous, True

    def __getitem__(self, key: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous}[key]


class ndarray:
    """A CuPy array: its memory is a NumPy array that only the stand-in itself may touch."""

    __array_priority__ = 100
    __slots__ = ("_mem",)

    def __init__(self, mem: np.ndarray) -> None:
        assert isinstance(mem, np.ndarray), type(mem)
        object.__setattr__(self, "_mem", mem)

    # --- what CuPy refuses -------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError(IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            return NotImplemented
        if ufunc.__name__ in NOT_IN_CUPY:
            return NotImplemented  # CuPy looks the ufunc up in cupy: NumPy then raises TypeError
        if "out" in kwargs:
            kwargs["out"] = tuple(_device_only(o, ufunc.__name__) for o in kwargs["out"])
        args = [_device_only(x, ufunc.__name__) for x in inputs]
        return _wrap(ufunc(*args, **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        """As CuPy: run ``cupy.<name>`` (here: this module's) for ``numpy.<name>``. A function CuPy
        lacks returns NotImplemented there, and NumPy raises TypeError; a function this stand-in
        lacks raises TypeError too, saying so, rather than run on the host."""
        try:
            impl = getattr(functools.reduce(getattr, func.__module__.split(".")[1:], sys.modules[__name__]),
                           func.__name__)
        except AttributeError:
            raise TypeError(f"no implementation found for '{func.__module__}.{func.__name__}' on device arrays: "
                            f"CuPy raises TypeError for a NumPy function it lacks (if cupy.{func.__name__} exists, "
                            f"add it to tests/strict_cupy.py)") from None
        for t in types_:
            if not issubclass(t, ndarray):
                return NotImplemented  # NumPy then raises TypeError: no host/device mixing
        return impl(*args, **kwargs)

    # --- attributes ---------------------------------------------------------------------------
    shape = property(lambda self: self._mem.shape)
    dtype = property(lambda self: self._mem.dtype)
    ndim = property(lambda self: self._mem.ndim)
    size = property(lambda self: self._mem.size)
    nbytes = property(lambda self: self._mem.nbytes)
    itemsize = property(lambda self: self._mem.itemsize)
    strides = property(lambda self: self._mem.strides)
    flags = property(lambda self: _Flags(self._mem))
    T = property(lambda self: ndarray(self._mem.T))
    device = property(lambda self: cuda.Device(0))
    data = property(lambda self: types.SimpleNamespace(ptr=self._mem.ctypes.data))  # MemoryPointer.ptr

    @property
    def __cuda_array_interface__(self) -> dict:
        a = self._mem
        return {"shape": a.shape, "typestr": a.dtype.str, "descr": a.dtype.descr, "version": 3, "stream": 1,
                "strides": None if a.flags.c_contiguous else a.strides, "data": (a.ctypes.data, False)}

    def __len__(self) -> int:
        return len(self._mem)

    def __iter__(self) -> Iterator["ndarray"]:
        return (ndarray(self._mem[i]) for i in range(len(self._mem)))

    # CuPy formats a device array from a host copy of it (``repr(self.get())``)
    def __repr__(self) -> str:
        return repr(self._download("repr"))

    def __str__(self) -> str:
        return str(self._download("str"))

    def __format__(self, format_spec: str) -> str:
        return format(self._download("format"), format_spec)

    # --- indexing -----------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._mem[_index(key)])

    def __setitem__(self, key, value) -> None:
        if isinstance(value, np.ndarray):
            LEDGER.record("h2d", value.nbytes, "setitem")
        self._mem[_index(key)] = value._mem if isinstance(value, ndarray) else value

    # --- explicit transfers -------------------------------------------------------------------
    def get(self, stream=None, order="C", out=None) -> np.ndarray:
        host = self._download("get", order)
        if out is not None:
            out[...] = host
            return out
        return host

    def _download(self, how: str, order: str = "C") -> np.ndarray:
        LEDGER.record("d2h", self.nbytes, how)
        return np.array(self._mem, order=order)

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._download("item").item()

    def tolist(self):
        return self._download("tolist").tolist()

    def __int__(self) -> int:
        return int(self._download("int"))

    def __float__(self) -> float:
        return float(self._download("float"))

    def __bool__(self) -> bool:
        return bool(self._download("bool"))

    # --- device-side methods ------------------------------------------------------------------
    def astype(self, dtype, copy: bool = True, **kw) -> "ndarray":
        return ndarray(self._mem.astype(dtype, copy=copy, **kw))

    def copy(self, order: str = "C") -> "ndarray":
        LEDGER.device_copies += 1
        return ndarray(self._mem.copy(order=order))

    def reshape(self, *shape, **kw) -> "ndarray":
        return ndarray(self._mem.reshape(*shape, **kw))

    def transpose(self, *axes) -> "ndarray":
        return ndarray(self._mem.transpose(*axes))

    def ravel(self) -> "ndarray":
        return ndarray(self._mem.ravel())

    def view(self, dtype=None) -> "ndarray":
        return ndarray(self._mem.view() if dtype is None else self._mem.view(dtype))

    def __getattr__(self, name: str):
        if name in ("sum", "mean", "max", "min", "any", "all", "argmax", "argmin", "clip", "nonzero", "squeeze"):
            method = getattr(self._mem, name)
            return lambda *a, **k: _wrap(method(*_unwrap_all(a, name), **_unwrap_all(k, name)))
        raise AttributeError(f"strict_cupy.ndarray has no {name!r} (add it if the package now uses it)")

    # --- DLPack -------------------------------------------------------------------------------
    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        _check_dlpack_stream(stream)
        return self._mem.__dlpack__()  # the emulated device memory, shared, not copied

    def __dlpack_device__(self) -> tuple[int, int]:
        return (CUDA, 0)

    toDlpack = __dlpack__


def _binary(ufunc: np.ufunc, reflected: bool = False) -> Callable:
    def op(self, other):
        return self.__array_ufunc__(ufunc, "__call__", *((other, self) if reflected else (self, other)))
    return op


for _name, _uf in {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
                   "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "and": np.bitwise_and,
                   "or": np.bitwise_or, "xor": np.bitwise_xor, "lshift": np.left_shift,
                   "rshift": np.right_shift}.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
    setattr(ndarray, f"__r{_name}__", _binary(_uf, reflected=True))
for _name, _uf in {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                   "eq": np.equal, "ne": np.not_equal}.items():
    setattr(ndarray, f"__{_name}__", _binary(_uf))
ndarray.__neg__ = lambda self: ndarray(-self._mem)
ndarray.__invert__ = lambda self: ndarray(~self._mem)
ndarray.__abs__ = lambda self: ndarray(abs(self._mem))
ndarray.__hash__ = None
ndarray.__module__ = "cupy"          # trt_anon.cuda.array_module tells CuPy arrays by their module


# NumPy ufuncs that CuPy 14.2 has no function for (its __array_ufunc__ returns NotImplemented)
NOT_IN_CUPY = frozenset({"isnat", "matvec", "spacing", "vecdot", "vecmat"})


def _device_only(x, what: str):
    """A ufunc/kernel operand: device arrays and Python/NumPy scalars pass, host arrays do not."""
    if isinstance(x, ndarray):
        return x._mem
    if isinstance(x, np.ndarray):
        raise TypeError(f"Unsupported type {type(x)} in cupy.{what}: a host array mixed with device arrays")
    return x


def _unwrap_all(obj, what: str):
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap_all(o, what) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap_all(v, what) for k, v in obj.items()}
    return _device_only(obj, what)


def _index(key):
    """Index with device arrays as CuPy does; a host index array is copied to the device (recorded)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._mem
    if isinstance(key, np.ndarray) or isinstance(key, list):
        LEDGER.record("h2d", np.asarray(key).nbytes, "index")
    return key


def _wrap(result):
    """NumPy results back onto the device; a NumPy scalar becomes a 0-d device array, as in CuPy."""
    if isinstance(result, tuple):
        return tuple(_wrap(r) for r in result)
    if isinstance(result, list):
        return [_wrap(r) for r in result]
    if isinstance(result, (np.ndarray, np.generic)):
        return ndarray(np.asarray(result))
    return result


# --- module functions the package uses ------------------------------------------------------
def asarray(obj, dtype=None) -> ndarray:
    """A device array: as is, zero-copy from ``__cuda_array_interface__``, else uploaded (recorded)."""
    if isinstance(obj, ndarray):
        return obj if dtype is None else obj.astype(dtype, copy=False)
    if hasattr(obj, "__cuda_array_interface__"):
        return ndarray(np.asarray(_DeviceMemory(obj), dtype=dtype))
    host = np.asarray(obj, dtype=dtype)
    LEDGER.record("h2d", host.nbytes, "asarray")
    return ndarray(host.copy())


array = asarray


def asnumpy(a, stream=None, order="C", out=None) -> np.ndarray:
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out)
    return np.asarray(a, order=order)  # CuPy passes host data through unchanged


def from_dlpack(obj) -> ndarray:
    """Only CUDA DLPack tensors: a host tensor given to CuPy is an error, not a silent upload."""
    device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else None
    if device is None or device[0] != CUDA:
        raise TypeError(f"cupy.from_dlpack: tensor on DLPack device {device} is not CUDA memory")
    stream = cuda.get_current_stream().ptr or 1          # what CuPy asks producers for: 1 = legacy default
    capsule = obj.__dlpack__(stream=stream)
    return ndarray(np.from_dlpack(_Capsule(capsule)))


def ascontiguousarray(a, dtype=None) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.ascontiguousarray: {type(a)} is not a device array")
    return ndarray(np.ascontiguousarray(a._mem, dtype=dtype))


def _device_function(fn: Callable, copies: bool = False) -> Callable:
    @functools.wraps(fn)
    def run(*args, **kwargs):
        for x in _leaves(args):
            if not isinstance(x, ndarray) and isinstance(x, np.ndarray):
                raise TypeError(f"cupy.{fn.__name__}: Only cupy arrays can be used here, got a NumPy array")
        if copies:
            LEDGER.device_copies += 1
        return _wrap(fn(*_unwrap_all(args, fn.__name__), **_unwrap_all(kwargs, fn.__name__)))
    return run


def _leaves(obj):
    if isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _leaves(o)
    else:
        yield obj


stack = _device_function(np.stack, copies=True)
concatenate = _device_function(np.concatenate, copies=True)
nonzero = _device_function(np.nonzero)
exp = _device_function(np.exp)
rot90 = _device_function(np.rot90)
where = _device_function(np.where)


def empty(shape, dtype=float) -> ndarray:
    return ndarray(np.empty(shape, dtype))


def zeros(shape, dtype=float) -> ndarray:
    return ndarray(np.zeros(shape, dtype))


def full(shape, fill_value, dtype=None) -> ndarray:
    return ndarray(np.full(shape, fill_value, dtype))


def empty_like(a: ndarray, dtype=None) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.empty_like: {type(a)} is not a device array")
    return ndarray(np.empty_like(a._mem, dtype=dtype))


for _t in ("uint8", "uint16", "uint32", "int32", "int64", "float16", "float32", "float64", "bool_"):
    globals()[_t] = getattr(np, _t)


class _DeviceMemory:
    """NumPy view of memory offered by ``__cuda_array_interface__`` (emulated device pointers are
    host pointers); keeps the owner alive."""

    def __init__(self, owner) -> None:
        self.owner = owner
        self.__array_interface__ = dict(owner.__cuda_array_interface__, version=3)


class _Capsule:
    def __init__(self, capsule) -> None:
        self.capsule = capsule

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (CPU, 0)


class RawKernel(_EmulatedKernel):
    """The real CUDA source, run by the CPU emulator; device arrays only as pointer arguments."""

    build_dir: Path

    def __call__(self, grid, block, args, **kwargs) -> None:
        mem = []
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}: a host array passed to kernel (CuPy refuses it)")
            mem.append(a._mem if isinstance(a, ndarray) else a)
        super().__call__(grid, block, mem)


class _Stream:
    """CuPy's stream: ``ptr`` 0 is the legacy default stream, as in CuPy."""

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0) -> None:
        self.ptr = 0 if null else (ptr or id(self))
        self._prev: list = []

    def synchronize(self) -> None:
        pass

    def use(self) -> "_Stream":
        _current.stream = self
        return self

    def __enter__(self) -> "_Stream":
        self._prev.append(getattr(_current, "stream", None))
        return self.use()

    def __exit__(self, *exc) -> None:
        _current.stream = self._prev.pop()

    def record(self, event=None):
        return event or types.SimpleNamespace(synchronize=lambda: None)

    def wait_event(self, event) -> None:
        pass


_current = threading.local()


class _Event:
    """``cupy.cuda.Event``: ``record`` notes the host's clock (the stand-in runs everything at once on the host),
    so ``get_elapsed_time`` gives the host time between two records, in ms, as CuPy gives the GPU's."""

    def __init__(self, block: bool = False, disable_timing: bool = False, interprocess: bool = False) -> None:
        self.at: float | None = None

    def record(self, stream=None) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        pass


def _elapsed_ms(start: _Event, end: _Event) -> float:
    if start.at is None or end.at is None:
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event was not recorded")
    return (end.at - start.at) * 1000.0


class _Device:
    def __init__(self, i: int = 0) -> None:
        self.id = i

    def synchronize(self) -> None:
        pass

    def __enter__(self) -> "_Device":
        return self

    def __exit__(self, *exc) -> None:
        pass


class _Pool:
    """CuPy's memory pool, as far as the package and the bench ask it."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self) -> None:
        pass


_POOL = _Pool()
get_default_memory_pool = lambda: _POOL  # noqa: E731
get_default_pinned_memory_pool = lambda: _POOL  # noqa: E731

cuda = types.SimpleNamespace(
    Stream=_Stream,
    Event=_Event,
    get_elapsed_time=_elapsed_ms,
    ExternalStream=lambda ptr, *a, **k: _Stream(ptr=ptr),
    get_current_stream=lambda: getattr(_current, "stream", None) or _NULL_STREAM,
    Device=lambda i=0: _Device(i),
    runtime=types.SimpleNamespace(
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda i: {"name": b"Strict CuPy stand-in (CPU)", "major": 9, "minor": 0,
                                       "totalGlobalMem": 80 << 30},
        deviceSynchronize=lambda: None,
        memGetInfo=lambda: (80 << 30, 80 << 30),
    ),
)
_NULL_STREAM = _Stream(null=True)


def module(build_dir: Path) -> types.ModuleType:
    """This file as the ``cupy`` module (put it in ``sys.modules["cupy"]``), kernels built in ``build_dir``."""
    me = sys.modules[__name__]
    me.RawKernel.build_dir = build_dir
    return me


def __getattr__(name: str):
    raise AttributeError(f"strict_cupy does not implement cupy.{name} (add it if the package now uses it)")
