"""The GPU stages' CUDA kernels, run on the CPU through tests/cuda_emu.py (same source, same launch
geometry, NumPy arrays for CuPy's), against the CPU path's reference. tests/gpu runs them for real."""
from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import types
from pathlib import Path

import av
import numpy as np
import pytest
from cuda_emu import compiler, compiles_with_nvcc, fake_cupy
from skimage import data, transform

from trt_anon.detect import centerface as cf
from trt_anon.detect import gpu_pre
from trt_anon.encode import gpu_color
from trt_anon.pipeline import Detector, Redactor
from trt_anon.redact import NumpyRedactor
from trt_anon.redact import gpu as cupy_redact
from trt_anon.redact.styles import blur, mosaic, solid

pytestmark = pytest.mark.skipif(compiler() is None, reason="g++ is needed to run the CUDA kernels on the CPU")
KERNELS = {"mosaic": mosaic.CUDA, "solid": solid.CUDA, "cell_means": blur.MEANS_CUDA,
           "blur": blur.BLUR_CUDA, "rgb_to_yuv": gpu_color._SRC, "ycc_to_rgb": gpu_color._YCC_SRC,
           "resize": gpu_pre._SRC}


class Event(tuple):
    """``cupy.cuda.Event``: which stream recorded it (compared as a tuple), and ``synchronize()``."""

    def synchronize(self) -> None:
        pass


class FakeStream:
    """``cupy.cuda.Stream`` as the detectors and the NVENC encoder use it: a pointer, events, and the
    stream a ``with`` block enters becomes the current one of that thread, as in CuPy (the decode runs in a
    thread of its own). Events are recorded, not timed: the tests check which stream waited for which."""

    legacy: "FakeStream"       # the legacy default stream: every thread's current stream until it enters one
    local = threading.local()

    def __init__(self, non_blocking: bool = False, ptr: int | None = None) -> None:
        self.ptr = id(self) if ptr is None else ptr
        self.waited: list = []

    @classmethod
    def current(cls) -> "FakeStream":
        return getattr(cls.local, "stream", None) or cls.legacy

    def record(self):
        return Event(("event", self.ptr))

    def wait_event(self, event) -> None:
        self.waited.append(event)

    def synchronize(self) -> None:
        pass

    def __enter__(self):
        self.outer, FakeStream.local.stream = FakeStream.local.__dict__.get("stream"), self
        return self

    def __exit__(self, *exc) -> None:
        FakeStream.local.stream = self.outer


@pytest.fixture
def cupy_on_cpu(monkeypatch, tmp_path_factory):
    build = tmp_path_factory.getbasetemp() / "kernels"
    build.mkdir(exist_ok=True)
    cp = fake_cupy(build)
    FakeStream.legacy, FakeStream.local = FakeStream(ptr=0), threading.local()
    cp.cuda = types.SimpleNamespace(Stream=FakeStream, get_current_stream=FakeStream.current,
                                    Device=lambda *a: types.SimpleNamespace(id=0))
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(gpu_color, "_kernel", None)
    monkeypatch.setattr(gpu_color, "_ycc_kernel", None)
    monkeypatch.setattr(gpu_color, "_nv12_kernel", None)
    monkeypatch.setattr(gpu_pre, "_kernel", None)
    return cp


@pytest.fixture
def torch_on_cpu(cupy_on_cpu, monkeypatch):
    """PyTorch's CPU standing in for CUDA: TorchCudaDetector builds its network on the CPU in FP32."""
    torch = pytest.importorskip("torch", reason="PyTorch is not in the CPU test extras; runs in tests/gpu")
    from trt_anon.detect import graph

    cpu_net = graph.TorchGraph
    monkeypatch.setattr(graph, "TorchGraph", lambda device, dtype, model: cpu_net("cpu", torch.float32, model))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "ExternalStream", lambda ptr: ("torch stream", ptr))
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext(s))


def faces(n: int, height: int, width: int) -> np.ndarray:
    """``n`` real-face frames (the astronaut, shifted a little each frame) of any size."""
    img = (transform.resize(data.astronaut(), (height, width + 4 * n)) * 255).round().astype(np.uint8)
    return np.stack([img[:, 4 * i:4 * i + width] for i in range(n)])


@pytest.mark.parametrize("name", KERNELS)
def test_kernels_compile_for_hopper(name, tmp_path):
    result = compiles_with_nvcc(KERNELS[name], tmp_path)
    if result is None:
        pytest.skip("no nvcc on this machine")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("cell", [25, 16])
def test_mosaic_kernel_equals_numpy_reference(cupy_on_cpu, cell):
    frames = faces(3, 190, 330)  # not multiples of 25: partial cells at the right and bottom
    rng = np.random.default_rng(3)
    boxes = []
    for _ in frames:
        x, y, s = rng.uniform(-30, 300, 3), rng.uniform(-30, 170, 3), rng.uniform(8, 150, 3)
        boxes.append(np.stack([x, y, x + s, y + s * 1.3], axis=1))
    boxes[1] = np.zeros((0, 4))
    ref = NumpyRedactor(cell)(frames.copy(), boxes)
    got = cupy_redact.CupyRedactor(cell)(frames.copy(), boxes)
    assert (got != frames).any()
    np.testing.assert_array_equal(got, ref)


def random_boxes(frames: np.ndarray, seed: int = 3) -> list[np.ndarray]:
    """Three boxes per frame (partly outside, overlapping, 8 to 150 px), none in the second frame."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in frames:
        x, y, s = rng.uniform(-30, 300, 3), rng.uniform(-30, 170, 3), rng.uniform(8, 150, 3)
        boxes.append(np.stack([x, y, x + s, y + s * 1.3], axis=1))
    boxes[1] = np.zeros((0, 4))
    return boxes


@pytest.mark.parametrize("style, cell", [("blur", 25), ("blur", 16), ("blur", 7), ("solid", 25), ("solid", 16)])
def test_style_kernels_equal_numpy_reference(cupy_on_cpu, style, cell):
    frames = faces(3, 190, 330)  # not multiples of 25: partial cells at the right and bottom
    boxes = random_boxes(frames)
    ref = NumpyRedactor(cell, style, (200, 30, 90))(frames.copy(), boxes)
    got = cupy_redact.CupyRedactor(cell, style, (200, 30, 90))(frames.copy(), boxes)
    assert (got != frames).any()
    np.testing.assert_array_equal(got, ref)


def test_style_kernel_test_can_fail(cupy_on_cpu, monkeypatch):
    """The comparison above catches a plausible slip: rows measured from pixel corners, not centres
    (interpolation weights off by half a pixel)."""
    wrong = blur.BLUR_CUDA.replace("uy = 2 * y + 1 - c", "uy = 2 * y - c")
    assert wrong != blur.BLUR_CUDA
    monkeypatch.setattr(blur.Blur, "kernels", ((blur.MEANS_CUDA, "cell_means"), (wrong, "blur_cells")))
    frames = faces(2, 100, 120)
    boxes = [np.array([[10, 10, 90, 80]]), np.array([[30, 5, 110, 60]])]
    ref = NumpyRedactor(25, "blur")(frames.copy(), boxes)
    got = cupy_redact.CupyRedactor(25, "blur")(frames.copy(), boxes)
    assert (got != ref).any()


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_gpu_path_gets_the_style_and_colour_asked_for(cupy_on_cpu, style):
    """``select_redactor`` hands the style, cell size and fill colour to the GPU redactor: its pixels are the
    CPU path's, which differ from what a redactor given none of them makes (so the comparison can fail)."""
    from trt_anon.config import Config
    from trt_anon.redact import select_redactor

    frames = faces(3, 190, 330)
    boxes = random_boxes(frames)
    boxes[2] = np.array([[40, 10, 290, 180]])  # a large face: its cells grow past the smallest one
    cfg = Config(style=style, fill_color="#3050f0", mosaic_cell=40)
    gpu, cpu = select_redactor(cfg, gpu=True), select_redactor(cfg, gpu=False)
    assert (gpu.name, cpu.name) == ("cupy", "numpy")
    ref = cpu(frames.copy(), boxes)
    np.testing.assert_array_equal(gpu(frames.copy(), boxes), ref)
    assert (NumpyRedactor(25)(frames.copy(), boxes) != ref).any()  # 25 px smallest cells, mosaic: the defaults
    if style == "solid":
        assert (NumpyRedactor(40, "solid")(frames.copy(), boxes) != ref).any()  # black: the default colour


@pytest.mark.parametrize("colorspace, color_range, height", [(1, 1, 720), (5, 1, 360), (1, 2, 720), (2, 1, 360)])
def test_rgb_to_yuv_kernel_round_trips_through_libswscale(cupy_on_cpu, colorspace, color_range, height):
    """Our YUV, read back by FFmpeg with the tags the encoder writes, gives the input's colours."""
    frames = faces(2, height, height * 16 // 9 // 2 * 2)
    yuv = gpu_color.rgb_to_yuv420(frames, colorspace, color_range)
    nv12 = gpu_color.rgb_to_yuv420(frames, colorspace, color_range, nv12=True)
    h, w = frames.shape[1:3]
    for rgb, i420, semi in zip(frames, yuv, nv12):
        np.testing.assert_array_equal(semi[:h], i420[:h])
        u, v = i420[h:].reshape(2, h // 2, w // 2)
        np.testing.assert_array_equal(semi[h:].reshape(h // 2, w // 2, 2), np.stack([u, v], axis=-1))
        sws_matrix = {0.2126: 1, 0.299: 5, 0.2627: 9}[gpu_color.matrix(colorspace)[0]]
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        back = frame.reformat(format="rgb24", src_colorspace=sws_matrix, src_color_range=color_range).to_ndarray()
        assert np.abs(back.astype(int) - rgb).mean() < 2.5


def test_resize_kernel_matches_opencv_area(cupy_on_cpu):
    from trt_anon.detect.onnxrt import OnnxRuntimeDetector

    frames = faces(2, 720, 1280)
    for det_size in ("auto", 640):
        g = cf.Geometry.fit(720, 1280, det_size)
        ref = OnnxRuntimeDetector.preprocess(None, frames, g)
        got = gpu_pre.preprocess(frames, g)
        assert got.shape == ref.shape == (2, 3, g.in_h, g.in_w)
        assert (got[:, :, g.resized_h:] == 0).all() and (got[:, :, :, g.resized_w:] == 0).all()
        assert np.abs(ref - got).mean() < 0.5 and np.abs(ref - got).max() < 8


def test_fp16_nhwc_input_is_the_float_input_rounded_to_half(cupy_on_cpu):
    """The kernel that feeds the PyTorch detector writes FP16 NHWC itself: the float NCHW input rounded to
    half, bit for bit, downscaled (fractional averages) and at full size (whole levels), padding zero."""
    frames = faces(2, 720, 1280)
    for det_size in ("auto", 1280):
        g = cf.Geometry.fit(720, 1280, det_size)
        ref = gpu_pre.preprocess(frames, g)
        half = gpu_pre.preprocess(frames, g, layout="nhwc-fp16")
        assert half.dtype == np.float16 and half.shape == (2, g.in_h, g.in_w, 3)
        want = ref.transpose(0, 2, 3, 1).astype(np.float16)
        np.testing.assert_array_equal(half.view(np.uint16), want.view(np.uint16))
        assert (half[:, g.resized_h:] == 0).all() and (half[:, :, g.resized_w:] == 0).all()
    out = np.zeros((4, g.in_h, g.in_w, 3), np.float16)
    assert gpu_pre.preprocess(frames, g, out=out[:2], layout="nhwc-fp16") is not None and out[:2].any()
    with pytest.raises(ValueError, match="C-contiguous"):
        gpu_pre.preprocess(frames, g, out=out[:, :-1], layout="nhwc-fp16")


def test_half_rounding_in_the_kernel_is_round_to_nearest_even(cupy_on_cpu):
    """The kernel's float -> FP16 bits against NumPy's, on values the area average never makes: ties, the
    subnormal range, the largest half, overflow."""
    src = gpu_pre._SRC + r"""
extern "C" __global__ void to_half(const float* values, unsigned short* bits, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) bits[i] = half_bits(values[i]);
}
"""
    rng = np.random.default_rng(0)
    ulp = np.float32(2.0 ** -10)
    x = np.concatenate([rng.uniform(0, 255, 4000), rng.uniform(0, 1e-4, 500), -rng.uniform(0, 300, 500),
                        (np.arange(1, 200) + 0.5) * ulp * 4, [0.0, -0.0, 1.0, 65504.0, 65519.0, 65520.0, 1e9,
                                                              2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -26, 6e-8]])
    x = x.astype(np.float32)
    y = np.zeros(len(x), np.uint16)
    cupy_on_cpu.RawKernel(src, "to_half")(((len(x) + 127) // 128,), (128,), (x, y, np.int32(len(x))))
    with np.errstate(over="ignore"):  # 1e9 and 65520 become infinity, as they should
        want = x.astype(np.float16)
    np.testing.assert_array_equal(y, want.view(np.uint16))


class ShapeLog:
    """A network that notes the shape of each batch it runs (the detector's buckets)."""

    def __init__(self, net, device: str) -> None:
        self.net, self.device, self.shapes = net, device, []

    def __call__(self, x):
        self.shapes.append(tuple(x.shape))
        return self.net(x)


def test_padded_buckets_give_the_same_detections(torch_on_cpu):
    """A call of 5 frames runs as a batch of 8 (3 rows of padding), each frame alone as a batch of 1: the same
    faces in every frame, to float rounding."""
    from trt_anon.detect.torch_cuda import TorchCudaDetector

    det = TorchCudaDetector("auto", 0.15, max_batch=8)
    det.net = log = ShapeLog(det.net, "cpu")
    frames = faces(5, 180, 320)
    together = det(frames)
    alone = [det(f[None])[0] for f in frames]
    assert [s[0] for s in log.shapes] == [8, 1, 1, 1, 1, 1]
    assert all(len(d) for d in together)
    for a, b in zip(together, alone):
        assert len(a) == len(b) and np.abs(a.xyxy - b.xyxy).max() < 0.01 and np.abs(a.score - b.score).max() < 1e-4


def test_every_bucket_is_warmed_up_for_the_frame_size(torch_on_cpu, monkeypatch):
    """On CUDA, making the detector for a frame size runs the network once at every bucket, with cuDNN's
    autotuner on; then a call of 11 frames runs at 16, a shape met already."""
    import torch

    from trt_anon.detect.torch_cuda import TorchCudaDetector

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    det = TorchCudaDetector("auto", 0.15)
    assert torch.backends.cudnn.benchmark
    det.net = log = ShapeLog(det.net, "cuda:0")
    g = cf.Geometry.fit(180, 320, "auto")
    det.warm_up(g)
    assert [s[0] for s in log.shapes] == [1, 4, 8, 16, 24, 32] and {s[1:] for s in log.shapes} == {(3, g.in_h, g.in_w)}
    log.shapes.clear()
    det(faces(11, 180, 320))
    assert log.shapes == [(16, 3, g.in_h, g.in_w)]
    log.device = "cpu"
    log.shapes.clear()
    det.warm_up(g)
    assert log.shapes == []  # nothing to tune off CUDA


def test_redaction_runs_on_its_own_stream_joined_both_ways(cupy_on_cpu):
    """The redactor's kernels run on its own stream, after a GPU-side wait for the caller's (the frames'
    decoding); the caller's stream then waits for the redaction (what it queues next, the encoder, comes after)."""
    red = cupy_redact.CupyRedactor(25)
    seen, style = [], red.style
    red.style = types.SimpleNamespace(name=style.name, launch=lambda *a: (
        seen.append(cupy_on_cpu.cuda.get_current_stream()), style.launch(*a))[1])
    caller = cupy_on_cpu.cuda.get_current_stream()
    frames = faces(2, 90, 160)
    red(frames.copy(), [np.array([[20, 10, 80, 70]], np.float32)] * 2)
    assert seen and all(s is red.stream for s in seen) and red.stream is not caller
    assert red.stream.waited == [caller.record()] and caller.waited == [red.stream.record()]
    assert cupy_on_cpu.cuda.get_current_stream() is caller


def test_torch_detector_glue_on_cpu(torch_on_cpu):
    """TorchCudaDetector's path (kernel preprocessing, DLPack to PyTorch and back, decoding in the
    CuPy namespace) with the CPU standing in for CUDA: same faces as ONNX Runtime."""
    from trt_anon.detect.detections import iou
    from trt_anon.detect.onnxrt import OnnxRuntimeDetector
    from trt_anon.detect.torch_cuda import TorchCudaDetector

    frames = faces(3, 360, 640)
    ref = OnnxRuntimeDetector("auto", 0.15)(frames)
    got = TorchCudaDetector("auto", 0.15, max_batch=2)(frames)
    assert [len(d) for d in got] == [len(d) for d in ref] and all(len(d) for d in ref)
    for a, b in zip(ref, got):
        assert (iou(a.xyxy, b.xyxy).max(axis=1) > 0.9).all()
        assert isinstance(b.xyxy, np.ndarray)


def test_gpu_pipeline_rehearsed_on_cpu(torch_on_cpu, monkeypatch, tmp_path):
    """``backend="gpu"`` end to end with the CPU standing in: DALI (its CPU reader, VP9), the PyTorch
    detector's glue, the mosaic and YUV kernels, libx264 fed from "device" YUV. Where DALI and
    PyTorch are installed (not CI); tests/gpu runs the real thing."""
    pytest.importorskip("nvidia.dali", reason="DALI is a GPU extra")
    from helpers import check_redacted, video_times
    from synth import Face, make_clip

    import trt_anon
    from trt_anon import cuda, stages
    from trt_anon.decode.dali import DaliDecoder

    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(stages, "select_gpu_decoder",
                        lambda p, n, tb, cs: DaliDecoder(p, n, tb, device="cpu", colorspace=cs))
    clip = make_clip(tmp_path / "in.webm", 320, 180, frames=35, faces=[Face(60, (40, 40), (3.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.mkv", backend="gpu")
    assert report.backends == {"decode": "dali", "detect": "torch-cuda-fp16", "redact": "cupy",
                               "encode": "libx264 (gpu yuv)"}
    assert any("no NVENC" in w or "nvenc" in w for w in report.warnings), report.warnings
    assert report.frames == 35 and video_times(tmp_path / "out.mkv") == video_times(clip.path)
    check_redacted(clip, clip.path, tmp_path / "out.mkv", max_bg=4.0)


def test_nvenc_frames_share_one_current_context(cupy_on_cpu, monkeypatch, tmp_path):
    """Every NVENC frame gets the same PyAV CudaContext, wrapping the current context (FFmpeg refuses
    a primary-context wrapper once CuPy made it active), and a stream value CuPy's __dlpack__
    accepts (-1, 1, 2 or a pointer; 0 raises). PyAV 18.1's real from_dlpack checks the planes."""
    from fractions import Fraction

    from av.video.frame import CudaContext

    from trt_anon.encode import gpu

    calls, real = [], av.VideoFrame.from_dlpack

    def from_dlpack(planes, format, width, height, stream=None, cuda_context=None, **kw):
        calls.append((stream, cuda_context))
        return real(planes, format=format, width=width, height=height)  # CPU planes: shapes/strides checked

    monkeypatch.setattr(gpu, "av", types.SimpleNamespace(VideoFrame=types.SimpleNamespace(from_dlpack=from_dlpack)))
    with av.open(str(tmp_path / "o.mp4"), "w") as out:
        enc = gpu.NvencEncoder(out, 64, 48, Fraction(30), Fraction(1, 30), (1, 1), 23, "fast")
        encoded = []
        enc.stream = types.SimpleNamespace(width=64, height=48, encode=lambda f: encoded.append(f) or [])
        for start in (0, 2):
            enc.encode(faces(2, 48, 64), [start, start + 1])
    assert len(calls) == len(encoded) == 4
    contexts = {id(c) for _, c in calls}
    ctx = calls[0][1]
    assert len(contexts) == 1 and isinstance(ctx, CudaContext)
    assert ctx.current_ctx and not ctx.primary_ctx
    # NVENC's input on the encoder's own stream, which first waited for the caller's (the redaction)
    assert enc.cuda_stream.ptr > 2 and ctx.cuda_stream == enc.cuda_stream.ptr
    assert all(s == enc.cuda_stream.ptr for s, _ in calls)  # a valid DLPack stream: never 0
    assert enc.cuda_stream.waited == [("event", 0)] * 2
    assert encoded[0].format.name == "nv12" and (encoded[0].width, encoded[0].height) == (64, 48)


def _dali_gpu_ycbcr(yuv: np.ndarray, h: int, w: int) -> np.ndarray:
    """What DALI's GPU reader returns with image_type=YCbCr (its color_space.cu, YUV_UPSAMPLE): Y as
    decoded, Cb/Cr sampled bilinearly at x/2 + 0.25 (pixel centres at +0.5), clamped, rounded."""
    def up(c, axis):
        n = c.shape[axis]
        i = np.arange(2 * n) // 2
        j = np.clip(np.where(np.arange(2 * n) % 2, i + 1, i - 1), 0, n - 1)
        return 0.75 * np.take(c, i, axis) + 0.25 * np.take(c, j, axis)

    u = yuv[h:h + h // 4].reshape(h // 2, w // 2).astype(float)
    v = yuv[h + h // 4:].reshape(h // 2, w // 2).astype(float)
    cb, cr = (np.rint(up(up(c, 0), 1)) for c in (u, v))
    return np.stack([yuv[:h], cb, cr], axis=-1).astype(np.uint8)


def test_bt709_hd_round_trips_from_dali_ycbcr(cupy_on_cpu):
    """1280x720 BT.709 video: DALI's YCbCr converted with the stream's matrix gives libswscale's
    colours, and re-encoding gives the stream's luma back. DALI's own RGB (BT.601 always) would move
    luma by ~2.5 levels on average; that is checked too, so this test can tell the two apart."""
    h, w = 720, 1280
    src = faces(1, h, w)[0]
    src[:80, :160] = (230, 40, 40)  # a saturated patch: BT.601 decoding would clip it
    frame = av.VideoFrame.from_ndarray(src, format="rgb24").reformat(format="yuv420p", dst_colorspace=1,
                                                                     dst_color_range=1)
    yuv = frame.to_ndarray()
    ref = av.VideoFrame.from_ndarray(yuv, format="yuv420p").reformat(
        format="rgb24", src_colorspace=1, src_color_range=1).to_ndarray()
    ycc = _dali_gpu_ycbcr(yuv, h, w)[None]
    rgb = gpu_color.ycc_to_rgb(ycc, 1, 1)
    assert rgb.dtype == np.uint8 and np.abs(rgb.astype(int) - ref).mean() < 1.5
    back = gpu_color.rgb_to_yuv420(rgb, 1, 1)[0]
    luma = np.abs(back[:h].astype(int) - yuv[:h])
    assert luma.mean() < 0.1 and (luma > 1).mean() < 1e-3  # (a few edge pixels of the red patch: chroma blur)
    dali_rgb = gpu_color.ycc_to_rgb(ycc, 5, 1)  # what DALI's RGB output is: BT.601 whatever the stream
    old = np.abs(gpu_color.rgb_to_yuv420(dali_rgb, 1, 1)[0][:h].astype(int) - yuv[:h])
    assert old.mean() > 1.5 and old.max() > 10


def test_deep_video_reaches_the_kernels_as_8_bit(cupy_on_cpu):
    """The "PyAV uploaded to the GPU" fallback: 10-bit video decodes to uint16 RGB, which must not
    reach kernels that read ``unsigned char*``; and a strided batch is never indexed as dense."""
    from trt_anon.decode import Batch
    from trt_anon.errors import BackendError
    from trt_anon.stages import Uploaded

    deep = np.array([0, 128, 129, 257, 385, 386, 65535], np.uint16)[None, None, :, None].repeat(3, axis=3)
    (b,) = list(Uploaded([Batch(deep, [0], None, 0)]))
    assert b.frames.dtype == np.uint8 and b.frames[0, 0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 255]
    with pytest.raises(BackendError, match="8-bit"):
        cupy_redact.CupyRedactor(25)(deep.copy(), [np.zeros((0, 4))])
    frames = faces(2, 100, 120)
    boxes = [np.array([[10, 10, 70, 80]]), np.array([[40, 5, 110, 60]])]
    ref = NumpyRedactor(25)(frames[:, ::-1].copy(), boxes)
    redactor = cupy_redact.CupyRedactor(25)
    got = redactor(frames[:, ::-1], boxes)  # flipped: a strided view
    assert isinstance(redactor, Redactor)     # what the loop takes (pipeline.py)
    np.testing.assert_array_equal(got, ref)


def test_torch_detector_runs_on_its_own_stream(torch_on_cpu, monkeypatch):
    """Preprocessing, inference and candidate decoding on the detector's non-default stream, after
    a GPU-side wait for the caller's stream; no host synchronisation but the candidates' copy."""
    import cupy

    from trt_anon.detect import torch_cuda

    det = torch_cuda.TorchCudaDetector("auto", 0.15, max_batch=2)
    assert isinstance(det, Detector)          # what the loop takes (pipeline.py)
    seen, real = [], det.model.decode

    def detections(*a, **k):
        seen.append(cupy.cuda.get_current_stream())
        return real(*a, **k)

    det.model = dataclasses.replace(det.model, decode=detections)
    caller = cupy.cuda.get_current_stream()
    det(faces(3, 90, 160))
    assert seen == [det.stream] and det.stream is not caller and det.stream.ptr != 0
    assert det.stream.waited == [caller.record()]
    assert cupy.cuda.get_current_stream() is caller


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_gpu_yuv_encoder_uses_every_core(cupy_on_cpu, tmp_path):
    """Without NVENC, libx264 is the wall: it must run frame threads on every core (x264's auto),
    not one. Counted as the OS threads x264 starts when it opens."""
    import os
    from fractions import Fraction

    from trt_anon.encode.gpu import GpuYuvEncoder

    with av.open(str(tmp_path / "o.mp4"), "w") as out:
        enc = GpuYuvEncoder(out, 320, 240, Fraction(30), Fraction(1, 30), (1, 1), 23, "veryfast")
        before = len(os.listdir("/proc/self/task"))
        enc.encode(faces(2, 240, 320), [0, 1])
        started = len(os.listdir("/proc/self/task")) - before
        enc.close()
    cores = len(os.sched_getaffinity(0))  # the cores this process may run on (x264 counts these, not the machine's)
    assert started >= (cores if cores > 1 else 0)  # on one core x264 encodes in the caller's thread


def test_ten_bit_video_on_the_uploaded_gpu_path(torch_on_cpu, monkeypatch, tmp_path):
    """10-bit HEVC where CUDA works but no GPU decoder does: PyAV's uint16 frames are uploaded,
    brought to 8 bits on the device, detected, mosaicked and encoded by the GPU stages, with a
    warning that the output is 8-bit."""
    from helpers import check_redacted
    from synth import Face, make_clip

    import trt_anon

    _no_gpu_decoder(monkeypatch)
    clip = make_clip(tmp_path / "hdr.mkv", 320, 180, frames=12, codec="libx265", pix_fmt="yuv420p10le",
                     faces=[Face(60, (40, 40), (3.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.mkv", backend="auto")
    assert report.backends["decode"] == "pyav (uploaded)" and report.backends["redact"] == "cupy"
    assert any("written as 8-bit" in w for w in report.warnings), report.warnings
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    check_redacted(clip, clip.path, tmp_path / "out.mkv", max_bg=4.0)


def _no_gpu_decoder(monkeypatch) -> None:
    """CUDA "available", no GPU decoder: the GPU path with PyAV's frames uploaded (as where DALI is missing)."""
    from trt_anon import cuda, stages
    from trt_anon.errors import BackendError

    def no_gpu_decoder(*args):
        raise BackendError("no GPU decoder in this rehearsal")

    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(stages, "select_gpu_decoder", no_gpu_decoder)


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_gpu_path_writes_each_style_as_the_reference_does(torch_on_cpu, monkeypatch, tmp_path, style):
    """process() on the GPU path, per style: every frame written, each the NumPy reference's redaction of the
    input frame with the run's own boxes (within codec noise), in the fill colour asked for."""
    import json

    from helpers import style_difference
    from synth import Face, make_clip

    import trt_anon

    _no_gpu_decoder(monkeypatch)
    clip = make_clip(tmp_path / "in.mp4", 320, 180, frames=12, audio=0, faces=[Face(70, (40, 30), (3.0, 0.5))])
    js = tmp_path / "out.json"
    report = trt_anon.process(clip.path, tmp_path / "out.mp4", style=style, fill_color="#3050f0", json_path=js)
    assert report.backends["redact"] == "cupy" and report.frames == 12
    frames = json.loads(js.read_text())["frames"]
    assert all(f["redacted"] for f in frames)
    diffs = style_difference(clip.path, tmp_path / "out.mp4", frames, style, (48, 80, 240))
    assert max(diffs) < 4, diffs  # codec noise ~2; another style or colour: 25 or more


@pytest.mark.parametrize("codec", ["vp9", "av1"])
def test_gpu_path_writes_vp9_and_av1_in_software_from_gpu_yuv(torch_on_cpu, monkeypatch, tmp_path, codec):
    """No NVENC for VP9 (nor AV1 on this machine): libvpx-vp9 / SVT-AV1 fed YUV made by the GPU kernel,
    rehearsed with the CPU standing in for CUDA (PyAV decode uploaded, as where DALI is missing)."""
    from helpers import check_redacted
    from synth import Face, make_clip

    import trt_anon

    _no_gpu_decoder(monkeypatch)
    clip = make_clip(tmp_path / "in.webm", 160, 96, frames=10, faces=[Face(50, (30, 20), (2.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.webm", codec=codec)
    assert report.backends["encode"] == f"{trt_anon.encode.CODECS[codec].encoder} (gpu yuv)"
    assert report.backends["redact"] == "cupy"
    with av.open(str(tmp_path / "out.webm")) as c:
        cc = c.streams.video[0].codec_context
        assert ({"libdav1d": "av1"}.get(cc.name, cc.name), cc.width, cc.height, cc.pix_fmt) == (codec, 160, 96,
                                                                                                 "yuv420p")
    check_redacted(clip, clip.path, tmp_path / "out.webm", max_bg=4.0)


@pytest.mark.parametrize("colorspace, color_range, height", [(1, 1, 720), (5, 1, 360), (1, 2, 720), (2, 1, 360),
                                                             (2, 1, 720)])
def test_ycc_kernel_matches_libswscale(cupy_on_cpu, colorspace, color_range, height):
    """YCbCr -> RGB with the matrix and range the encoder uses (tagged, or by height when untagged;
    limited or full range) gives libswscale's RGB for the same tags."""
    w = height * 16 // 9 // 2 * 2
    src = faces(1, height, w)[0]
    sws_matrix = {0.2126: 1, 0.299: 5}[gpu_color.matrix(colorspace)[0]]
    yuv = av.VideoFrame.from_ndarray(src, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=sws_matrix, dst_color_range=color_range).to_ndarray()
    ref = av.VideoFrame.from_ndarray(yuv, format="yuv420p").reformat(
        format="rgb24", src_colorspace=sws_matrix, src_color_range=color_range).to_ndarray()
    got = gpu_color.ycc_to_rgb(_dali_gpu_ycbcr(yuv, height, w)[None], colorspace, color_range)[0]
    assert np.abs(got.astype(int) - ref).mean() < 1.5
