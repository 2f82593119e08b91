"""CenterFace as an FP16 TensorRT engine: the first-choice GPU detector.

Thin on purpose: only TensorRT calls live here (build, deserialize, name-based tensor I/O on
the detector's own CuPy stream, ``cuda.on_stream``). The engine is built or loaded when the
stage is chosen (``frame_hw``), so a failure falls back to PyTorch under ``auto`` and the build
time stays out of the throughput figures. Geometry, pre/post-processing and cache naming are
shared with the other backends (centerface.py, gpu_pre.py, engine_cache.py) and tested there.
Written against TensorRT's documented Python API (10.x and 11.x): TensorRT cannot be installed
where this project is developed, so this file runs in tests only against a stand-in of that API
(tests/test_gpu_calls.py: build-when-chosen, fallback, ``set_input_shape`` refusal).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..cuda import on_stream
from ..errors import BackendError, DetectorError, first_line
from . import centerface as cf
from . import engine_cache, load_model
from .gpu_pre import preprocess
from .model import Model


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendError(f"TensorRT is not installed ({exc}); pip install '.[trt]'") from None
    return trt


def build(key: engine_cache.EngineKey, path: Path, log=print, logger=None, model: Model = cf.MODEL) -> Path:
    """Build an FP16 engine for ``key``'s input shape, batch 1..max_batch, and cache it at ``path``."""
    trt = _trt()
    from .graph import onnx_graph, to_fp16

    logger = logger or _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    config = builder.create_builder_config()
    graph = onnx_graph(model)
    if hasattr(trt.BuilderFlag, "FP16"):      # TensorRT 10: weakly typed, FP16 allowed by a flag
        config.set_flag(trt.BuilderFlag.FP16)
    else:                                     # TensorRT 11: strongly typed, FP16 must be in the graph
        graph = to_fp16(graph)
    if not parser.parse(graph.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse {model.name}: {errors}")
    shape = lambda n: (n, 3, key.in_h, key.in_w)  # noqa: E731
    profile = builder.create_optimization_profile()
    profile.set_shape(model.input_name, shape(1), shape(key.max_batch), shape(key.max_batch))
    config.add_optimization_profile(profile)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    log(f"building TensorRT engine {path.name} (a minute or two, once per GPU and input size) ...")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError("TensorRT failed to build the engine (see its log above)")
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of its own: two workers building the same engine at once must not write into one file;
    # the sidecar goes first, so an engine that is visible always has its sidecar
    engine_cache.write_sidecar(path, key)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(plan))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _logger(trt):
    """A TensorRT logger that prints warnings and keeps the errors: ``execute_async_v3`` only returns
    False, and its reason ("out of memory" among them, which the retry with a smaller batch looks
    for) is only in the log."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg: str) -> None:
            errors = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR)
            if severity in errors:
                self.errors = [*self.errors[-9:], msg.strip()]
            if severity in (*errors, trt.ILogger.Severity.WARNING):
                print(f"TensorRT: {msg.strip()}")

    return Logger()


TITLE = "TensorRT"


def make(config, frame_hw=None) -> "TensorRTDetector":
    return TensorRTDetector(config.det_size_for(gpu=True), config.threshold_for("fp32"), config.engine_path,
                            frame_hw=frame_hw, model=load_model(config.model))


class TensorRTDetector:
    name = "tensorrt-fp16"

    def __init__(self, det_size, threshold: float, engine_path: str | None = None, cache: str | None = None,
                 max_batch: int = 32, build_missing: bool = True, frame_hw: tuple[int, int] | None = None,
                 model: Model = cf.MODEL) -> None:
        """``frame_hw``: the (height, width) of the frames it will see; its engine is ready on return."""
        trt = self.trt = _trt()
        self.det_size, self.threshold, self.max_batch = det_size, threshold, max_batch
        self.engine_path, self.cache, self.build_missing = engine_path, cache, build_missing
        self.model = model
        self.contexts: dict[tuple[int, int], object] = {}
        try:  # TensorRT's and CUDA's errors are untyped (RuntimeError, TypeError, ...): each is a reason to fall back
            import cupy

            from .. import cuda

            self.cp = cupy
            self.dev = cuda.device()
            self.logger = _logger(trt)
            self.runtime = trt.Runtime(self.logger)
            self.stream = cupy.cuda.Stream(non_blocking=True)
            if frame_hw is not None:
                self._context(cf.Geometry.fit(*frame_hw, det_size))
        except BackendError:
            raise
        except Exception as exc:
            size = f" for {frame_hw[1]}x{frame_hw[0]} frames" if frame_hw else ""
            raise BackendError(f"TensorRT engine{size} failed: {first_line(exc)}") from None

    def _context(self, geom: cf.Geometry):
        """One engine per input size, from the cache (built there if missing) or an explicit path."""
        hw = (geom.in_h, geom.in_w)
        if hw not in self.contexts:
            key = engine_cache.key_for(self.dev["name"], self.dev["cc"], self.trt.__version__, geom, self.max_batch,
                                       self.model)
            path = Path(self.engine_path) if self.engine_path else engine_cache.cache_dir(self.cache) / key.filename
            if not path.exists() and not self.engine_path and self.build_missing:
                build(key, path, logger=self.logger, model=self.model)
            engine_cache.check(path, key)
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise BackendError(f"TensorRT could not load {path}; rebuild it with scripts/build_engine.py")
            self.contexts[hw] = (engine, engine.create_execution_context())
        return self.contexts[hw]

    def __call__(self, frames):
        cp, model = self.cp, self.model
        geom = cf.Geometry.fit(frames.shape[1], frames.shape[2], self.det_size)
        engine, ctx = self._context(geom)
        outs = []
        with on_stream(self.stream):
            for s in range(0, len(frames), self.max_batch):
                blob = preprocess(frames[s:s + self.max_batch], geom)
                if not ctx.set_input_shape(model.input_name, tuple(blob.shape)):
                    raise DetectorError(f"TensorRT refused input shape {tuple(blob.shape)} (outside the engine's "
                                        "profile); rebuild it with scripts/build_engine.py")
                ctx.set_tensor_address(model.input_name, blob.data.ptr)
                maps = []
                for name in model.output_names:
                    out = cp.empty(tuple(ctx.get_tensor_shape(name)), cp.float32)
                    ctx.set_tensor_address(name, out.data.ptr)
                    maps.append(out)
                if not ctx.execute_async_v3(self.stream.ptr):  # its reason went to the logger, not here
                    why = self.logger.errors[-1] if self.logger.errors else "no reason logged"
                    raise DetectorError(f"TensorRT failed to run a batch of {len(blob)}: {why}")
                outs.append(maps)
            maps = outs[0] if len(outs) == 1 else [cp.concatenate(m) for m in zip(*outs)]  # no copy of one chunk
            return model.decode(maps, self.threshold, geom, xp=cp)  # the one host wait: candidates
