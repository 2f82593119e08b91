"""GPU-path calls checked against the real packages' behaviour, on the CPU: PyAV's
CodecContext, PyNvVideoCodec's import, TensorRT engine selection, the out-of-memory retry."""
from __future__ import annotations

import contextlib
import gc
import sys
import types
import weakref

import av
import numpy as np
import pytest

from trt_anon import cuda
from trt_anon.errors import BackendError


def test_nvenc_probe_survives_an_encoder_that_opens(monkeypatch):
    """On a GPU with NVENC the probe's encoder opens; PyAV >= 14 has no CodecContext.close(), which
    used to raise AttributeError there. A real PyAV context (libx264) stands in for h264_nvenc."""
    from trt_anon.encode import gpu

    real = av.CodecContext.create
    opened = []
    monkeypatch.setattr(av, "CodecContext", types.SimpleNamespace(
        create=lambda name, mode: opened.append(name) or real("libx264", mode)))
    gpu.nvenc_available.cache_clear()
    assert gpu.nvenc_available("h264_nvenc") == (True, "")
    assert gpu.nvenc_available("h264_nvenc") == (True, "") and opened == ["h264_nvenc"]  # asked once per process
    gpu.nvenc_available.cache_clear()
    monkeypatch.setattr(av, "__version__", "17.1.0")  # the CPU path's minimum: no CudaContext(current_ctx)
    ok, why = gpu.nvenc_available("h264_nvenc")
    gpu.nvenc_available.cache_clear()
    assert not ok and "18.1" in why


def test_pynvvideocodec_that_cannot_load_the_driver_falls_back(monkeypatch, tmp_path):
    """PyNvVideoCodec 2.2.4's __init__ raises RuntimeError (not ImportError) when the driver's
    video libraries are missing, as in a container without the 'video' capability."""
    pkg = tmp_path / "PyNvVideoCodec"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('libnvidia-encode.so.1: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    from trt_anon.decode.nvdec import NvDecoder

    with pytest.raises(BackendError, match="video libraries.*libnvidia-encode"):
        NvDecoder(tmp_path / "x.mp4", 32, None)


def _fake_tensorrt(plan):
    """The TensorRT Python API as build() and TensorRTDetector use it; ``plan`` is what the builder
    returns (None: the build failed, as TensorRT reports it)."""
    ns = types.SimpleNamespace
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.1.0"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    severity = ns(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
    trt.ILogger = type("ILogger", (), {"Severity": severity, "__init__": lambda self: None})
    trt.BuilderFlag = ns(FP16=1)
    trt.MemoryPoolType = ns(WORKSPACE=0)
    config = ns(set_flag=lambda f: None, add_optimization_profile=lambda p: None,
                set_memory_pool_limit=lambda *a: None)
    trt.Builder = lambda logger: ns(create_network=lambda flags: object(), create_builder_config=lambda: config,
                                    create_optimization_profile=lambda: ns(set_shape=lambda *a: None),
                                    build_serialized_network=lambda net, cfg: plan)
    trt.OnnxParser = lambda net, logger: ns(parse=lambda data: True, num_errors=0)
    context = ns(shapes=[], set_input_shape=lambda name, shape: context.shapes.append(shape) and False)
    engine = ns(create_execution_context=lambda: context)
    trt.Runtime = lambda logger: ns(deserialize_cuda_engine=lambda data: engine if data == plan else None)
    trt.context = context
    return trt


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    pytest.importorskip("onnx")  # the engine build reads the model with it
    cp = types.ModuleType("cupy")
    cp.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: types.SimpleNamespace(ptr=7))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(cuda, "device", lambda: {"name": "NVIDIA H100 80GB HBM3", "cc": "90", "memory": 1 << 36})
    monkeypatch.setenv("TRT_ANON_ENGINE_DIR", str(tmp_path / "engines"))


def test_tensorrt_build_failure_falls_back_to_pytorch_when_the_stage_is_chosen(fake_gpu, monkeypatch):
    from trt_anon.config import Config
    from trt_anon.detect import select_detector, torch_cuda

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(None))
    monkeypatch.setattr(torch_cuda, "TorchCudaDetector", lambda *a, **k: types.SimpleNamespace(name="torch"))
    notes: list[str] = []
    det = select_detector(Config(), gpu=True, notes=notes, frame_hw=(1080, 1920))
    assert det.name == "torch"
    assert "TensorRT failed to build" in notes[0]


def test_tensorrt_engine_is_built_into_the_engine_dir_before_the_first_batch(fake_gpu, monkeypatch, tmp_path):
    """Built (and loaded) when chosen, in $TRT_ANON_ENGINE_DIR; a batch shape the engine's profile
    refuses (set_input_shape returns False) is an error, not a run with the last shape."""
    from trt_anon.detect.tensorrt import TensorRTDetector
    from trt_anon.errors import DetectorError

    trt = _fake_tensorrt(b"plan")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    det = TensorRTDetector("auto", 0.5, frame_hw=(1080, 1920))
    assert len(det.contexts) == 1
    assert [p.suffix for p in sorted((tmp_path / "engines").iterdir())] == [".engine", ".json"]
    frames = np.zeros((2, 1080, 1920, 3), np.uint8)
    monkeypatch.setattr("trt_anon.detect.tensorrt.preprocess", lambda f, g: np.zeros((len(f), 3, g.in_h, g.in_w)))
    monkeypatch.setattr("trt_anon.detect.tensorrt.on_stream", contextlib.nullcontext)
    with pytest.raises(DetectorError, match="refused input shape"):
        det(frames)
    assert trt.context.shapes == [(2, 3, 736, 1280)]


def test_free_memory_empties_cupy_pools_the_torch_cache_and_dali_pools(monkeypatch):
    """Before a retry after out-of-memory: CuPy's pools, PyTorch's cache, and DALI's own pools (DALI 2.4's
    ``nvidia.dali.backend.ReleaseUnusedMemory``), whichever are loaded."""
    freed = []
    pool = lambda name: types.SimpleNamespace(free_all_blocks=lambda: freed.append(name))  # noqa: E731
    cp = types.ModuleType("cupy")
    cp.get_default_memory_pool, cp.get_default_pinned_memory_pool = lambda: pool("device"), lambda: pool("pinned")
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_initialized=lambda: True, empty_cache=lambda: freed.append("torch"))
    dali = types.ModuleType("nvidia.dali.backend")
    dali.ReleaseUnusedMemory = lambda: freed.append("dali")
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "nvidia.dali.backend", dali)
    cuda.free_memory()
    assert sorted(freed) == ["dali", "device", "pinned", "torch"]


def test_out_of_memory_retry_frees_memory_once_the_failed_run_is_gone(clips, tmp_path, monkeypatch):
    """The retry frees the pools only after the failed attempt's batches are unreachable (while the
    exception is being handled, its traceback keeps them alive and freeing gives nothing back)."""
    import trt_anon
    from trt_anon import api
    from trt_anon.detect import onnxrt

    class OutOfMemoryError(RuntimeError):
        pass

    class Batch:  # stands in for the device arrays the failed attempt held
        pass

    held, real, alive_at_free = [], onnxrt.OnnxRuntimeDetector.__call__, []

    def oom_once(self, frames, shown=None):
        if not held:
            batch = Batch()
            held.append(weakref.ref(batch))
            raise OutOfMemoryError("out of memory allocating 1 GB")
        return real(self, frames, shown)

    def free_memory():
        gc.collect()
        alive_at_free.append(held[0]() is not None)

    monkeypatch.setattr(onnxrt.OnnxRuntimeDetector, "__call__", oom_once)
    monkeypatch.setattr(api.cuda, "free_memory", free_memory)
    report = trt_anon.process(clips["two"].path, tmp_path / "o.mp4")
    assert report.frames == len(clips["two"].boxes)
    assert alive_at_free == [False]


def test_engine_dir_from_the_environment(monkeypatch, tmp_path):
    from trt_anon.detect import engine_cache

    monkeypatch.setenv("TRT_ANON_ENGINE_DIR", str(tmp_path))
    assert engine_cache.cache_dir() == tmp_path
    assert engine_cache.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_detector_is_chosen_for_the_frames_as_displayed(monkeypatch, tmp_path):
    """The engine is built for the size the detector will see: a phone clip stored 640x360 (W x H)
    with a 90-degree display rotation is detected upright, 640 high (a TensorRT profile is per size)."""
    from synth import make_clip

    import trt_anon
    from trt_anon import stages

    asked = []

    def select_detector(cfg, gpu, notes=None, frame_hw=None):
        if gpu:
            asked.append(frame_hw)
            raise BackendError("no GPU detector in this test")
        return real(cfg, gpu, notes)

    real = stages.select_detector
    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(stages, "select_detector", select_detector)
    clip = make_clip(tmp_path / "phone.mp4", 360, 640, frames=3, audio=0, rotation=90)
    report = trt_anon.process(clip.path, tmp_path / "o.mp4")
    assert asked == [(640, 360)] and report.frames == 3
