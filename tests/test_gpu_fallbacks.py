"""The GPU path's failures, on the CPU: anything that goes wrong while a GPU stage is chosen is a
fallback with its reason (never the end of an ``auto`` run), a GPU decoder proves itself on the
file's first batch, TensorRT's errors and out-of-memory are recognised, the encoder thread waits
for the redaction on the GPU, and NVENC's input outlives its stream's use of it."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_kernels_on_cpu import cupy_on_cpu, faces  # noqa: F401  (fixture: CUDA kernels run on the CPU)

from trt_anon import cuda
from trt_anon.errors import BackendError, DetectorError


# --- choosing the stages ---------------------------------------------------------------------------
def _no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # "import tensorrt" raises ImportError


@pytest.mark.parametrize("stage", ["detector", "redactor"])
def test_auto_falls_back_to_the_cpu_whatever_a_gpu_stage_raises(clips, tmp_path, monkeypatch, stage):
    """A GPU detector that cannot import ``onnx`` (ModuleNotFoundError), or a kernel that NVRTC cannot
    compile (a RuntimeError subclass in CuPy), ends an ``auto`` run on the CPU with the reason said;
    asked for by name, it is a one-line BackendError, not the package's own exception."""
    import trt_anon
    from trt_anon import stages
    from trt_anon.detect import torch_cuda

    _no_tensorrt(monkeypatch)
    monkeypatch.setattr(cuda, "available", lambda: True)
    if stage == "detector":
        def torch_detector(*a, **k):
            raise ModuleNotFoundError("No module named 'onnx'")
        monkeypatch.setattr(torch_cuda, "TorchCudaDetector", torch_detector)
        said = "ModuleNotFoundError: No module named 'onnx'"
    else:
        monkeypatch.setattr(torch_cuda, "TorchCudaDetector", lambda *a, **k: types.SimpleNamespace(name="torch"))

        def redactor(cfg, gpu, layout=None):
            if gpu:
                raise RuntimeError("nvrtc: error: failed to open libnvrtc-builtins.so.13.0")
            return real(cfg, gpu, layout)
        real = stages.select_redactor
        monkeypatch.setattr(stages, "select_redactor", redactor)
        said = "RuntimeError: nvrtc: error: failed to open libnvrtc-builtins"
    report = trt_anon.process(clips["two"].path, tmp_path / "o.mp4")
    assert report.backends["detect"].startswith("onnxruntime") and report.backends["redact"] == "numpy"
    assert report.frames == len(clips["two"].boxes)
    assert any(w.startswith("CPU path:") and said in w for w in report.warnings), report.warnings
    with pytest.raises(BackendError, match="backend 'gpu' cannot run here: .*" + said.split(":")[0]):
        trt_anon.process(clips["two"].path, tmp_path / "g.mp4", backend="gpu")
    assert not (tmp_path / "g.mp4").exists()


# --- TensorRT, against its documented Python API -------------------------------------------------
def _tensorrt(runtime=None, execute=True):
    """The TensorRT names TensorRTDetector uses. ``runtime``: raised by ``trt.Runtime`` when given;
    ``execute``: what ``execute_async_v3`` returns (False: it logs an error first, as TensorRT does)."""
    ns = types.SimpleNamespace
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    severity = ns(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
    trt.ILogger = type("ILogger", (), {"Severity": severity, "__init__": lambda self: None})
    loggers = []

    def execute_async_v3(stream):
        if not execute:
            loggers[0].log(severity.ERROR, "[defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime "
                                           "(out of memory)")
        return execute

    context = ns(set_input_shape=lambda name, shape: True, set_tensor_address=lambda name, ptr: None,
                 get_tensor_shape=lambda name: (1, 1, 2, 2), execute_async_v3=execute_async_v3)
    engine = ns(create_execution_context=lambda: context)

    def Runtime(logger):
        if runtime is not None:
            raise runtime
        loggers.append(logger)
        return ns(deserialize_cuda_engine=lambda data: engine)

    trt.Runtime = Runtime
    return trt


class _DeviceBuffer:
    def __init__(self, shape=(1,)) -> None:
        self.shape, self.data = tuple(shape), types.SimpleNamespace(ptr=1)

    def __len__(self) -> int:
        return self.shape[0]


@pytest.fixture
def trt_machine(monkeypatch, tmp_path):
    """A GPU that CuPy sees (names only: the TensorRT calls never touch memory here)."""
    cp = types.ModuleType("cupy")
    cp.float32 = np.float32
    cp.empty = lambda shape, dtype: _DeviceBuffer(shape)
    cp.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: types.SimpleNamespace(ptr=7))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(cuda, "device", lambda: {"name": "NVIDIA H100 80GB HBM3", "cc": "90", "memory": 1 << 36})
    monkeypatch.setenv("TRT_ANON_ENGINE_DIR", str(tmp_path / "engines"))
    return tmp_path / "engines"


def test_tensorrt_runtime_that_fails_to_start_is_a_reason_to_fall_back(trt_machine, monkeypatch):
    from trt_anon.detect.tensorrt import TensorRTDetector

    monkeypatch.setitem(sys.modules, "tensorrt", _tensorrt(runtime=RuntimeError("CUDA initialization failure "
                                                                                 "with error: 35\nmore")))
    with pytest.raises(BackendError, match="TensorRT engine for 1920x1080 frames failed: RuntimeError: CUDA "
                                           "initialization failure with error: 35$"):
        TensorRTDetector("auto", 0.5, frame_hw=(1080, 1920))


def test_tensorrt_out_of_memory_is_recognised_for_the_retry(trt_machine, monkeypatch):
    """``execute_async_v3`` only returns False; the reason is in TensorRT's log, which the error quotes,
    so the run is retried with a smaller batch like any other out-of-memory error."""
    from trt_anon.detect import engine_cache, tensorrt
    from trt_anon.detect.centerface import Geometry

    monkeypatch.setitem(sys.modules, "tensorrt", _tensorrt(execute=False))
    geom = Geometry.fit(1080, 1920, "auto")
    key = engine_cache.key_for("NVIDIA H100 80GB HBM3", "90", "10.13.0", geom)
    trt_machine.mkdir()
    (trt_machine / key.filename).write_bytes(b"plan")
    engine_cache.write_sidecar(trt_machine / key.filename, key)
    det = tensorrt.TensorRTDetector("auto", 0.5, frame_hw=(1080, 1920))
    monkeypatch.setattr(tensorrt, "preprocess", lambda f, g: _DeviceBuffer((len(f), 3, g.in_h, g.in_w)))
    monkeypatch.setattr(tensorrt, "on_stream", contextlib.nullcontext)
    with pytest.raises(DetectorError, match="out of memory") as err:
        det(np.zeros((4, 1080, 1920, 3), np.uint8))
    assert cuda.is_out_of_memory(err.value)


def test_two_engine_builds_never_share_a_temporary_file(trt_machine, monkeypatch):
    """Two workers building the same engine at once each write a file of their own, then rename it."""
    pytest.importorskip("onnx")  # the build reads the model with it
    from trt_anon.detect import engine_cache, tensorrt
    from trt_anon.detect.centerface import Geometry

    ns = types.SimpleNamespace
    trt = _tensorrt()
    trt.BuilderFlag, trt.MemoryPoolType = ns(FP16=1), ns(WORKSPACE=0)
    config = ns(set_flag=lambda f: None, add_optimization_profile=lambda p: None, set_memory_pool_limit=lambda *a: None)
    trt.Builder = lambda logger: ns(create_network=lambda flags: object(), create_builder_config=lambda: config,
                                    create_optimization_profile=lambda: ns(set_shape=lambda *a: None),
                                    build_serialized_network=lambda net, cfg: b"plan")
    trt.OnnxParser = lambda net, logger: ns(parse=lambda data: True, num_errors=0)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    renamed = []
    real_replace, real_path_replace = os.replace, Path.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(str(a)), real_replace(a, b))[1])
    monkeypatch.setattr(Path, "replace", lambda self, b: (renamed.append(str(self)), real_path_replace(self, b))[1])
    key = engine_cache.key_for("NVIDIA H100 80GB HBM3", "90", "10.13.0", Geometry.fit(1080, 1920, "auto"))
    path = trt_machine / key.filename
    for _ in range(2):
        tensorrt.build(key, path, log=lambda msg: None)
    assert len(renamed) == 2 and renamed[0] != renamed[1], renamed
    assert path.read_bytes() == b"plan" and not list(trt_machine.glob("*.part"))
    engine_cache.check(path, key)


# --- GPU decoders: proven on the first batch ---------------------------------------------------------
def test_a_gpu_decoder_that_fails_on_its_first_batch_is_not_chosen(monkeypatch):
    """NVDEC checks what it can decode only once decoding starts (DALI's DALI_ENFORCE(caps.bIsSupported)
    in its parser callback, PyNvVideoCodec in get_batch_frames): the failure must come while the
    stage is chosen, so that the file falls back to PyAV instead of failing after its first batch."""
    from trt_anon import decode
    from trt_anon.decode import dali, nvdec

    class Refused:
        name = "dali"
        errors = 0

        def __init__(self, *a, **k):
            pass

        def __iter__(self):
            raise RuntimeError('[frames_decoder_gpu.cc:412] Assert on "caps.bIsSupported" failed: Codec not '
                               "supported on this GPU")
            yield

    def no_nvdec(*a, **k):
        raise BackendError("PyNvVideoCodec is not installed")

    monkeypatch.setattr(dali, "DaliDecoder", Refused)
    monkeypatch.setattr(nvdec, "NvDecoder", no_nvdec)
    with pytest.raises(BackendError, match=r"no GPU decoder runs here: RuntimeError: .*bIsSupported.* / "
                                           "PyNvVideoCodec is not installed"):
        decode.select_gpu_decoder(Path("x.mp4"), 32, Fraction(1, 30), (1, 1))

    class Works(Refused):
        def __iter__(self):
            yield from ("first", "second")

    monkeypatch.setattr(dali, "DaliDecoder", Works)
    chosen = decode.select_gpu_decoder(Path("x.mp4"), 32, Fraction(1, 30), (1, 1))
    assert chosen.name == "dali" and chosen.errors == 0 and list(chosen) == ["first", "second"]


# --- the encoder thread and NVENC ----------------------------------------------------------------
@pytest.fixture
def strict_cupy_module(monkeypatch, tmp_path_factory):
    from cuda_emu import compiler

    if compiler() is None:
        pytest.skip("g++ is needed to run the CUDA kernels on the CPU")
    import strict_cupy

    from trt_anon.encode import gpu_color

    build = tmp_path_factory.getbasetemp() / "kernels"
    build.mkdir(exist_ok=True)
    cp = strict_cupy.module(build)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    for name in ("_kernel", "_ycc_kernel", "_nv12_kernel"):
        monkeypatch.setattr(gpu_color, name, None)
    return cp


def test_the_encoder_thread_waits_for_the_redaction_on_the_gpu(strict_cupy_module, monkeypatch):
    """Each thread has a default stream of its own (CUPY_CUDA_PER_THREAD_DEFAULT_STREAM=1, or an
    encoder's own stream): the encoder thread must not read a batch before the redaction queued on
    the decoding thread's stream is done. Its stream waits for an event recorded after the redaction, and
    the decoded frames the redaction read are let go only once the host has seen that event pass."""
    from trt_anon import pipeline
    from trt_anon.config import Config
    from trt_anon.decode.batch import Batch
    from trt_anon.detect.detections import Detections
    from trt_anon.report import Report

    cp = strict_cupy_module
    log: list[tuple] = []
    local = threading.local()

    class Event(tuple):
        def synchronize(self):
            log.append(("synchronize", self, threading.current_thread().name))

    class Stream:
        def __init__(self, name):
            self.name, self.ptr = name, 2

        def record(self, event=None):
            log.append(("record", self.name, threading.current_thread().name))
            return Event(("event", self.name, len(log)))

        def wait_event(self, event):
            log.append(("wait", self.name, event))

    def per_thread_default_stream():
        if not hasattr(local, "stream"):
            local.stream = Stream(threading.current_thread().name)
        return local.stream

    monkeypatch.setattr(cp.cuda, "get_current_stream", per_thread_default_stream)

    def redact(frames, boxes):
        log.append(("redact", threading.current_thread().name))
        return cp.stack(frames)

    class Encoder:
        packet_time, last_pts = 0.0, None

        def encode(self, frames, pts):
            log.append(("encode", threading.current_thread().name))

        def close(self):
            pass

    frames = cp.asarray(np.zeros((3, 16, 16, 3), np.uint8))
    stages = pipeline.Stages(decoder=[Batch(frames, [0, 1, 2], Fraction(1, 30), 0)],
                             detector=lambda f: [Detections.empty() for _ in range(len(f))],
                             redactor=redact, sink=Encoder())
    pipeline.run(stages, Config(lookback=0), Report("in", "out"))
    main = threading.current_thread().name
    redacted = log.index(("redact", main))
    recorded = next(i for i, e in enumerate(log) if i > redacted and e[:2] == ("record", main))
    event = ("event", main, recorded + 1)
    encoded = next(i for i, e in enumerate(log) if e[0] == "encode")
    encoder_thread = log[encoded][1]
    assert encoder_thread != main
    assert ("wait", encoder_thread, event) in log[recorded:encoded], log
    assert ("synchronize", event, encoder_thread) in log[encoded:], log


def test_nvenc_keeps_its_input_until_its_stream_is_past_it(strict_cupy_module, monkeypatch, tmp_path):
    """CuPy returns freed memory to its pool at once: the caller's batch, read by the conversion
    kernel on NVENC's stream, must stay referenced until that stream's event has passed."""
    import av
    from gpu_standins import NvencLog, _OutputStandIn, install_nvenc

    from trt_anon.encode.gpu import NvencEncoder

    cp = strict_cupy_module
    install_nvenc(monkeypatch)
    synced: list[int] = []

    class Event:
        def __init__(self, n):
            self.n = n

        def synchronize(self):
            synced.append(self.n)

    recorded = []
    monkeypatch.setattr(type(cp.cuda.Stream(non_blocking=True)), "record",
                        lambda self, event=None: (recorded.append(Event(len(recorded))), recorded[-1])[1])
    with av.open(str(tmp_path / "o.mp4"), "w") as container:
        enc = NvencEncoder(_OutputStandIn(container, NvencLog()), 64, 48, 30, Fraction(1, 30), (1, 1), 20, "p4")
        first = cp.asarray(np.full((2, 48, 64, 3), 90, np.uint8))
        enc.encode(first, [0, 1])
        held = [a for a in enc.in_flight[1] if a is first]
        assert held, "the caller's batch must stay referenced while NVENC's stream may read it"
        assert synced == []
        enc.encode(cp.asarray(np.full((2, 48, 64, 3), 120, np.uint8)), [2, 3])
        last = recorded[-1].n
        assert synced and synced[-1] < last and all(a is not first for a in enc.in_flight[1])
        enc.close()
        assert synced[-1] == last and enc.in_flight is None


# --- colours of untagged video ------------------------------------------------------------------
def _untagged_hd(height: int = 720, width: int = 1280):
    """A real-face 1280x720 picture with a saturated patch, as an untagged stream stores it (what
    libswscale writes when nothing says otherwise) and as PyAV decodes it back to RGB."""
    import av

    rgb = faces(1, height, width)[0].copy()
    rgb[:100, :200] = (230, 40, 40)
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    return yuv, yuv.to_ndarray(format="rgb24")


def test_untagged_hd_round_trips_through_the_gpu_encoder(cupy_on_cpu):  # noqa: F811
    """PyAV's batches (uploaded to the GPU) are untagged HD converted by libswscale with BT.601; the
    GPU encoder must convert them back with the same matrix, or every colour moves (~10 luma codes
    for saturated red under a BT.709 guess)."""
    import av

    from trt_anon.encode import gpu_color

    yuv, decoded = _untagged_hd()
    assert yuv.colorspace == 2  # untagged: AVCOL_SPC_UNSPECIFIED
    i420 = gpu_color.rgb_to_yuv420(cupy_on_cpu.asarray(decoded[None]), 2, 0)[0]
    stored = yuv.to_ndarray()
    assert np.abs(i420[:720].astype(int) - stored[:720]).mean() < 1.0  # luma codes as the input had them
    back = av.VideoFrame.from_ndarray(np.asarray(i420), format="yuv420p").to_ndarray(format="rgb24")
    assert np.abs(back[:100, :200].astype(int) - decoded[:100, :200]).mean() < 2.0


# (AVColorSpace, AVColorRange, height, width): untagged SD and HD (BT.601 at every size, as libswscale), tagged
# BT.601 and BT.709 (the tag wins at any size), limited and full range
NV12_CASES = [(2, 0, 360, 640), (2, 0, 480, 640), (2, 0, 576, 720), (2, 0, 720, 1280), (5, 1, 480, 720),
              (5, 1, 576, 720), (1, 1, 480, 640), (1, 2, 360, 640), (5, 2, 720, 1280)]


@pytest.mark.parametrize("colorspace, color_range, height, width", NV12_CASES,
                         ids=[f"{'untagged' if c == 2 else f'tag{c}'}-{'full' if r == 2 else 'limited'}-{h}p"
                              for c, r, h, _ in NV12_CASES])
def test_nv12_from_a_gpu_decoder_converts_like_pyav(cupy_on_cpu, colorspace, color_range, height, width):  # noqa: F811
    """A GPU decoder's NV12 (PyNvVideoCodec's native output: the stream's own codes), converted with the stream's
    matrix and range, gives the RGB that PyAV's decoder gives for the same codes (``PyAVDecoder``: the YUV 4:2:0
    frame through libswscale with its own tags), on a real face with saturated patches: a wrong matrix moves
    saturated colours by ~10 levels."""
    import av

    from trt_anon.encode import gpu_color

    rgb = faces(1, height, width)[0].copy()
    rgb[:64, :128] = (230, 40, 40)
    rgb[64:128, :128] = (40, 60, 220)
    tags = {} if colorspace == 2 else {"dst_colorspace": colorspace, "dst_color_range": color_range}
    yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p", **tags)
    assert (yuv.colorspace == 2) == (colorspace == 2)  # untagged: AVCOL_SPC_UNSPECIFIED, as the stream says
    ref = yuv.to_ndarray(format="rgb24", src_colorspace=yuv.colorspace, src_color_range=yuv.color_range)
    planes = yuv.to_ndarray()  # (H * 3 / 2, W): Y, then U and V at half size one after the other
    u = planes[height:height + height // 4].reshape(height // 2, width // 2)
    v = planes[height + height // 4:].reshape(height // 2, width // 2)
    nv12 = np.concatenate([planes[:height], np.stack([u, v], axis=2).reshape(height // 2, width)])
    got = gpu_color.nv12_to_rgb(cupy_on_cpu.asarray(np.stack([nv12, nv12])), yuv.colorspace, yuv.color_range)
    assert got.shape == (2, height, width, 3)
    diff = np.abs(np.asarray(got[1]).astype(int) - ref)
    assert diff.mean() < 1.5 and diff[:128, :128].mean() < 2.0, (diff.mean(), diff[:128, :128].mean())


# --- segments (Ray): joined by packet copy ----------------------------------------------------------
@pytest.mark.parametrize("nvenc", [False, True])
def test_gpu_segments_are_stitchable_and_never_nvenc(tmp_path, monkeypatch, nvenc):
    """Every segment of a file must be encoded with the same headers (x264's ``stitchable``) to join
    by packet copy, on the GPU path too; NVENC has no such option, so a segment never uses it."""
    import av

    from trt_anon import stages
    from trt_anon.config import Config
    from trt_anon.encode import gpu

    monkeypatch.setattr(gpu, "nvenc_available", lambda codec="h264_nvenc": (nvenc, "" if nvenc else "no NVENC"))
    info = types.SimpleNamespace(width=64, height=48, rate=Fraction(30))
    decoder = types.SimpleNamespace(time_base=Fraction(1, 30), deep=False)
    notes: list[str] = []
    with av.open(str(tmp_path / "seg.mp4"), "w") as out:
        enc = stages.select_encoder(out, info, decoder, (1, 1), Config(codec="h264", crf=20), True, notes,
                                    stitchable=True)
        assert enc.name == "libx264 (gpu yuv)"
        assert "stitchable=1" in enc.stream.codec_context.options["x264-params"].split(":")
