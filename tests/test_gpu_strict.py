"""``process(backend="gpu")`` rehearsed on the CPU with a strict CuPy stand-in (tests/strict_cupy.py):
frames stay on the device from the GPU decoder to the encoder, and every host<->device copy is
counted. What it proves: the package's GPU glue (decoder class, detector glue, kernels, encoders)
asks for no frame-sized copy beyond the one per batch the libx264 fallback needs, and none on the
NVENC path. What it cannot: CUDA's memory model, streams and speed (tests/gpu, scripts/nightly_gpu.py).

Needs DALI (its CPU video reader), CPU PyTorch and g++; CI installs them (.ci/run), where
TRT_ANON_REQUIRE_REHEARSAL=1 turns any skip into a failure.
"""
from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
import pytest
import strict_cupy
from cuda_emu import compiler
from gpu_standins import dali_decoder_on_device, install_nvenc, patch_torch, pynvvideocodec_module
from strict_cupy import LEDGER

from trt_anon.detect import gpu_pre
from trt_anon.encode import gpu_color

W, H, N = 640, 360, 40          # 40 frames: a full 32-frame batch and a partial one


@pytest.fixture
def strict_gpu(monkeypatch, tmp_path_factory):
    """The strict CuPy stand-in as ``cupy``, CPU PyTorch as CUDA (``CudaTensor``), CUDA "available"."""
    if compiler() is None:
        pytest.skip("g++ is needed to run the CUDA kernels on the CPU")
    torch = pytest.importorskip("torch", reason="CPU PyTorch stands in for CUDA PyTorch")
    from trt_anon import cuda
    from trt_anon.detect import graph

    build = tmp_path_factory.getbasetemp() / "kernels"
    build.mkdir(exist_ok=True)
    monkeypatch.setitem(sys.modules, "cupy", strict_cupy.module(build))
    monkeypatch.setattr(gpu_color, "_kernel", None)
    monkeypatch.setattr(gpu_pre, "_kernel", None)
    cpu_net = graph.TorchCenterFace
    monkeypatch.setattr(graph, "TorchCenterFace", lambda device, dtype: cpu_net("cpu", torch.float32))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: types.SimpleNamespace(synchronize=lambda: None,
                                                                                       cuda_stream=0))
    monkeypatch.setattr(torch.cuda, "ExternalStream", lambda ptr, *a, **k: types.SimpleNamespace(cuda_stream=ptr),
                        raising=False)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    patch_torch(monkeypatch, torch)
    monkeypatch.setattr(cuda, "available", lambda: True)
    LEDGER.clear()
    yield strict_cupy
    LEDGER.clear()


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """VP9 (DALI's CPU reader decodes VP9 only), two real faces moving, Opus audio."""
    from trt_anon.synth import Face, make_clip

    d = tmp_path_factory.mktemp("strict")
    return make_clip(d / "in.webm", W, H, frames=N, faces=[Face(80, (60, 60), (4.0, 0.5)),
                                                           Face(56, (420, 160), (-2.0, 1.0), flip=True)])


def frame_sized(transfers: list, height: int = H, width: int = W) -> list:
    """Copies of at least one luma plane: anything a frame or more; boxes and cell lists are far smaller."""
    return [t for t in transfers if t.nbytes >= height * width]


def assert_only_boxes_come_to_the_host(ledger: strict_cupy.Ledger) -> None:
    """Every device->host copy that is not the encoder's is the detector's candidate boxes (small)."""
    small = [t for t in ledger.d2h() if t.nbytes < H * W]
    assert small, "the detector copied no candidates to the host?"
    assert all("centerface.py" in t.where for t in small), [t for t in small if "centerface.py" not in t.where]


# --- the stand-in itself: it must refuse what CuPy refuses ----------------------------------------
def test_strict_cupy_refuses_implicit_host_copies(strict_gpu, tmp_path):
    cp = strict_gpu
    dev = cp.asarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    host = np.ones((3, 4), np.uint8)
    assert [(t.direction, t.nbytes) for t in LEDGER.transfers] == [("h2d", 12)]
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(dev)
    with pytest.raises(TypeError):
        dev + host                                    # mixing device and host arrays
    with pytest.raises(TypeError):
        np.concatenate([dev, host])                   # __array_function__ with a foreign array
    with pytest.raises(TypeError):
        cp.stack([dev, host])
    with pytest.raises(TypeError):
        host[dev > 3]                                 # a device mask on a host array
    with pytest.raises(ValueError, match="valid stream"):
        dev.__dlpack__(stream=0)                      # CuPy 14 refuses 0 on CUDA
    with pytest.raises(TypeError, match="not CUDA memory"):
        cp.from_dlpack(host)                          # a host tensor is not taken as device memory
    with pytest.raises(TypeError):
        gpu_pre.preprocess(host[None, ..., None].repeat(3, axis=3), _geom())  # CuPy: "incorrect type"
    with pytest.raises(TypeError, match="host array passed to kernel"):
        gpu_pre.preprocess(cp.asarray(host[None, ..., None].repeat(3, axis=3)), _geom())  # builds the kernel
        gpu_pre._kernel((1, 1, 1), (1, 1, 1), (host, dev, *[np.int32(1)] * 6, np.float32(1), np.float32(1)))
    out = (dev * 2 + 1)[dev > 3]                      # device arithmetic and masks stay on the device
    assert type(out) is cp.ndarray and type(cp.nonzero(dev > 3)[0]) is cp.ndarray
    assert cp.asnumpy(out).tolist() == [9, 11, 13, 15, 17, 19, 21, 23]
    assert [(t.direction, t.nbytes, t.how) for t in LEDGER.transfers[-1:]] == [("d2h", 8, "get")]
    assert "test_gpu_strict.py" in LEDGER.transfers[-1].where


def test_dlpack_keeps_the_device_tag_through_pytorch(strict_gpu):
    import torch

    cp = strict_gpu
    dev = cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    t = torch.from_dlpack(dev)
    assert t.__dlpack_device__() == (2, 0)
    back = cp.from_dlpack(torch.relu(t - 1).contiguous())        # an operation's result is on CUDA too
    assert type(back) is cp.ndarray and back.shape == (2, 3)
    with pytest.raises(TypeError, match="not CUDA memory"):
        cp.from_dlpack(torch.zeros(3))                            # a host tensor given to CuPy
    with pytest.raises(TypeError, match="cuda:0"):
        t.numpy()
    assert [t.direction for t in LEDGER.transfers] == ["h2d"]


def test_the_checks_catch_a_host_round_trip(strict_gpu):
    """The assertions the pipeline tests make fail when a frame visits the host: a hidden
    ``np.asarray`` raises, and an explicit download + upload is counted as frame-sized both ways."""
    from trt_anon.redact.cupy_mosaic import CupyRedactor

    cp = strict_gpu
    frames = cp.asarray(np.zeros((2, H, W, 3), np.uint8))
    LEDGER.clear()
    with pytest.raises(TypeError, match="Implicit conversion"):
        CupyRedactor(25)(np.asarray(frames), [np.zeros((0, 4))] * 2)
    CupyRedactor(25)(cp.asarray(frames.get()), [np.array([[10, 10, 90, 90]], np.float32)] * 2)
    assert len(frame_sized(LEDGER.d2h())) == 1 and len(frame_sized(LEDGER.h2d())) == 1


def _geom():
    from trt_anon.detect import centerface as cf
    return cf.Geometry.fit(3, 4, 640)


# --- process(backend="gpu") ---------------------------------------------------------------------
def _check_output(clip, out, report) -> None:
    from helpers import check_redacted, video_times

    assert report.frames == N
    assert video_times(out) == video_times(clip.path)
    check_redacted(clip, clip.path, out, max_bg=4.0)


@pytest.mark.parametrize("decoder", ["dali", "pynvvideocodec", "pyav (uploaded)"])
def test_gpu_path_without_nvenc_downloads_each_frame_once_as_yuv(strict_gpu, face_clip, monkeypatch, tmp_path,
                                                                  decoder):
    """libx264 fallback (H100/H200): exactly one device->host copy per encoded batch, YUV 4:2:0
    (1.5 bytes a pixel), each frame once; no frame-sized upload after the GPU decoder (DALI or
    PyNvVideoCodec; the PyAV fallback uploads each decoded batch once, and nothing else); only
    boxes come back otherwise."""
    import trt_anon
    from trt_anon import api, stages
    from trt_anon.decode import pyav as pyav_decode
    from trt_anon.encode.gpu import GpuYuvEncoder

    pytest.importorskip("nvidia.dali", reason="DALI's CPU reader plays NVDEC")
    if decoder == "dali":
        monkeypatch.setattr(stages, "select_gpu_decoder", dali_decoder_on_device)
    elif decoder == "pynvvideocodec":
        from trt_anon.decode.nvdec import NvDecoder

        monkeypatch.setitem(sys.modules, "PyNvVideoCodec", pynvvideocodec_module())
        monkeypatch.setattr(stages, "select_gpu_decoder", lambda path, n, tb, *a: NvDecoder(path, n, tb))
    else:
        def no_gpu_decoder(*a):
            raise api.BackendError("no GPU decoder here (test)")
        monkeypatch.setattr(stages, "select_gpu_decoder", no_gpu_decoder)
    calls: list[int] = []
    real_encode = GpuYuvEncoder.encode
    monkeypatch.setattr(GpuYuvEncoder, "encode", lambda self, f, pts: (calls.append(len(pts)),
                                                                      real_encode(self, f, pts))[1])
    batches: list[int] = []
    real_iter = pyav_decode.PyAVDecoder.__iter__
    monkeypatch.setattr(pyav_decode.PyAVDecoder, "__iter__",
                        lambda self: (batches.append(len(b)) or b for b in real_iter(self)))

    out = tmp_path / "out.mkv"
    report = trt_anon.process(face_clip.path, out, backend="auto" if decoder.startswith("pyav") else "gpu")
    assert report.backends == {"decode": decoder, "detect": "torch-cuda-fp16", "redact": "cupy",
                               "encode": "libx264 (gpu yuv)"}
    big_down = frame_sized(LEDGER.d2h())
    assert [t.nbytes for t in big_down] == [n * H * W * 3 // 2 for n in calls], big_down
    assert sum(calls) == N and all("gpu.py" in t.where for t in big_down)
    big_up = frame_sized(LEDGER.h2d())
    if decoder != "pyav (uploaded)":
        assert big_up == [], big_up
    else:  # one upload per decoded batch, in stages.Uploaded, and none after it
        assert [t.nbytes for t in big_up] == [n * H * W * 3 for n in batches] and sum(batches) == N, big_up
        assert all("stages.py" in t.where for t in big_up)
    assert_only_boxes_come_to_the_host(LEDGER)
    _check_output(face_clip, out, report)


def test_gpu_path_with_nvenc_no_frame_comes_to_the_host(strict_gpu, face_clip, monkeypatch, tmp_path):
    """NVENC path: CUDA NV12 frames go from the mosaic/YUV kernels to the encoder by DLPack, with one
    ``CudaContext`` for the whole run and a valid DLPack stream; no frame-sized copy either way."""
    import trt_anon
    from trt_anon import stages

    pytest.importorskip("nvidia.dali", reason="DALI's CPU reader plays NVDEC")
    monkeypatch.setattr(stages, "select_gpu_decoder", dali_decoder_on_device)
    log = install_nvenc(monkeypatch)
    out = tmp_path / "out.mkv"
    report = trt_anon.process(face_clip.path, out, backend="gpu")
    assert report.backends == {"decode": "dali", "detect": "torch-cuda-fp16", "redact": "cupy",
                               "encode": "h264_nvenc"}
    assert frame_sized(LEDGER.d2h()) == [] and frame_sized(LEDGER.h2d()) == []
    assert_only_boxes_come_to_the_host(LEDGER)
    assert log.frames == N
    assert len({id(c) for c in log.contexts}) == 1 and log.contexts[0] is not None, \
        "one CudaContext for the current context must be passed to every from_dlpack call"
    assert all(s is None or s == -1 or s >= 1 for s in log.streams), log.streams
    _check_output(face_clip, out, report)


@pytest.mark.parametrize("style", ["blur", "solid"])
def test_gpu_styles_keep_frames_on_the_device(strict_gpu, face_clip, monkeypatch, tmp_path, style):
    """Blur (cell means, then interpolation) and solid run on the device like the mosaic: with NVENC no
    frame-sized copy either way, and the pixels written are the NumPy reference's for that style and colour."""
    import json

    from helpers import style_difference

    import trt_anon
    from trt_anon import stages

    pytest.importorskip("nvidia.dali", reason="DALI's CPU reader plays NVDEC")
    monkeypatch.setattr(stages, "select_gpu_decoder", dali_decoder_on_device)
    install_nvenc(monkeypatch)
    out, js = tmp_path / "out.mkv", tmp_path / "out.json"
    report = trt_anon.process(face_clip.path, out, backend="gpu", style=style, fill_color="#3050f0", json_path=js)
    assert report.backends["redact"] == "cupy" and report.frames == N
    assert frame_sized(LEDGER.d2h()) == [] and frame_sized(LEDGER.h2d()) == []
    assert_only_boxes_come_to_the_host(LEDGER)
    diffs = style_difference(face_clip.path, out, json.loads(js.read_text())["frames"], style, (48, 80, 240))
    assert max(diffs) < 4, diffs  # codec noise ~2; another style or colour: 25 or more
