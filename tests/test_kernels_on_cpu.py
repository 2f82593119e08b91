"""The GPU stages' CUDA kernels, run on the CPU through tests/cuda_emu.py (same source, same launch
geometry, NumPy arrays for CuPy's), against the CPU path's reference. tests/gpu runs them for real."""
from __future__ import annotations

import contextlib
import sys
import types

import av
import numpy as np
import pytest
from cuda_emu import compiler, compiles_with_nvcc, fake_cupy
from skimage import data, transform

from trt_anon.detect import centerface as cf
from trt_anon.detect import gpu_pre
from trt_anon.encode import gpu_color
from trt_anon.redact import NumpyRedactor, cupy_mosaic

pytestmark = pytest.mark.skipif(compiler() is None, reason="g++ is needed to run the CUDA kernels on the CPU")
KERNELS = {"mosaic": cupy_mosaic._SRC, "rgb_to_yuv": gpu_color._SRC, "resize": gpu_pre._SRC}


class FakeStream:
    """``cupy.cuda.Stream`` as the detectors use it: a pointer, a context, events; the stream a
    ``with`` block enters becomes the current one, as in CuPy."""

    current: "FakeStream"

    def __init__(self, non_blocking: bool = False, ptr: int = 0) -> None:
        self.ptr = ptr or id(self)
        self.waited: list = []

    def record(self):
        return ("event", self.ptr)

    def wait_event(self, event) -> None:
        self.waited.append(event)

    def __enter__(self):
        self.outer, FakeStream.current = FakeStream.current, self
        return self

    def __exit__(self, *exc) -> None:
        FakeStream.current = self.outer


@pytest.fixture
def cupy_on_cpu(monkeypatch, tmp_path_factory):
    build = tmp_path_factory.getbasetemp() / "kernels"
    build.mkdir(exist_ok=True)
    cp = fake_cupy(build)
    FakeStream.current = FakeStream(ptr=0)  # the legacy default stream
    cp.cuda = types.SimpleNamespace(Stream=FakeStream, get_current_stream=lambda: FakeStream.current,
                                    Device=lambda *a: types.SimpleNamespace(id=0))
    cp.from_dlpack = np.from_dlpack
    monkeypatch.setitem(sys.modules, "cupy", cp)
    monkeypatch.setattr(gpu_color, "_kernel", None)
    monkeypatch.setattr(gpu_color, "_ycc_kernel", None)
    monkeypatch.setattr(gpu_pre, "_kernel", None)
    return cp


@pytest.fixture
def torch_on_cpu(cupy_on_cpu, monkeypatch):
    """PyTorch's CPU standing in for CUDA: TorchCudaDetector builds its network on the CPU in FP32."""
    torch = pytest.importorskip("torch", reason="PyTorch is not in the CPU test extras; runs in tests/gpu")
    from trt_anon.detect import graph

    cpu_net = graph.TorchCenterFace
    monkeypatch.setattr(graph, "TorchCenterFace", lambda device, dtype: cpu_net("cpu", torch.float32))
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


@pytest.mark.parametrize("cell", [25, "auto"])
def test_mosaic_kernel_equals_numpy_reference(cupy_on_cpu, cell):
    frames = faces(3, 190, 330)  # not multiples of 25: partial cells at the right and bottom
    rng = np.random.default_rng(3)
    boxes = []
    for _ in frames:
        x, y, s = rng.uniform(-30, 300, 3), rng.uniform(-30, 170, 3), rng.uniform(8, 150, 3)
        boxes.append(np.stack([x, y, x + s, y + s * 1.3], axis=1))
    boxes[1] = np.zeros((0, 4))
    ref = NumpyRedactor(cell)(frames.copy(), boxes)
    got = cupy_mosaic.CupyRedactor(cell)(frames.copy(), boxes)
    assert (got != frames).any()
    np.testing.assert_array_equal(got, ref)


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
        sws_matrix = {0.2126: 1, 0.299: 5, 0.2627: 9}[gpu_color.matrix(colorspace, h)[0]]
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

    import trt_anon
    from trt_anon import api, cuda
    from trt_anon.decode.dali import DaliDecoder
    from trt_anon.synth import Face, make_clip

    monkeypatch.setattr(cuda, "available", lambda: True)
    monkeypatch.setattr(api, "select_gpu_decoder", lambda p, n, tb, cs: DaliDecoder(p, n, tb, device="cpu", colorspace=cs))
    clip = make_clip(tmp_path / "in.webm", 320, 180, frames=35, faces=[Face(60, (40, 40), (3.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.mkv", backend="gpu")
    assert report.backends == {"decode": "dali", "detect": "torch-cuda-fp16", "redact": "cupy",
                               "encode": "libx264 (gpu yuv)"}
    assert any("no NVENC" in w or "nvenc" in w for w in report.warnings), report.warnings
    assert report.frames == 35 and video_times(tmp_path / "out.mkv") == video_times(clip.path)
    check_redacted(clip, clip.path, tmp_path / "out.mkv", max_bg=4.0)
