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
from fractions import Fraction

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
    cpu_net = graph.TorchGraph
    monkeypatch.setattr(graph, "TorchGraph", lambda device, dtype, model: cpu_net("cpu", torch.float32, model))
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
    from synth import Face, make_clip

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
        dev.__dlpack__(stream=-2)                     # CuPy 13.6-14.2 refuse a negative stream other than -1
    with pytest.raises(TypeError, match="not CUDA memory"):
        cp.from_dlpack(host)                          # a host tensor is not taken as device memory
    with pytest.raises(TypeError):
        gpu_pre.preprocess(host[None, ..., None].repeat(3, axis=3), _geom())  # CuPy: "incorrect type"
    with pytest.raises(TypeError, match="host array passed to kernel"):
        gpu_pre.preprocess(cp.asarray(host[None, ..., None].repeat(3, axis=3)), _geom())  # builds the kernel
        gpu_pre._kernel((1, 1, 1), (1, 1, 1), (host, dev, *[np.int32(1)] * 6, np.float32(1), np.float32(1),
                                               np.int32(0)))
    out = (dev * 2 + 1)[dev > 3]                      # device arithmetic and masks stay on the device
    assert type(out) is cp.ndarray and type(cp.nonzero(dev > 3)[0]) is cp.ndarray
    assert cp.asnumpy(out).tolist() == [9, 11, 13, 15, 17, 19, 21, 23]
    assert [(t.direction, t.nbytes, t.how) for t in LEDGER.transfers[-1:]] == [("d2h", 8, "get")]
    assert "test_gpu_strict.py" in LEDGER.transfers[-1].where


def test_strict_cupy_records_what_copies_to_the_host(strict_gpu):
    """CuPy's repr/str/format, item/tolist and int/float/bool all format or convert a host copy
    (``self.get()``): each is a device->host copy that waits for the stream, so each is recorded."""
    cp = strict_gpu
    dev = cp.asarray(np.arange(12, dtype=np.uint8).reshape(3, 4))
    one = dev[1, 2]
    LEDGER.clear()
    assert repr(dev) == repr(np.arange(12, dtype=np.uint8).reshape(3, 4)) and str(one) == "6"
    assert f"{dev[0, 1]:03d}" == "001" and one.item() == 6 and one.tolist() == 6
    assert (int(one), float(one), bool(one)) == (6, 6.0, True)
    assert [(t.direction, t.nbytes, t.how) for t in LEDGER.transfers] == [
        ("d2h", 12, "repr"), ("d2h", 1, "str"), ("d2h", 1, "format"), ("d2h", 1, "item"), ("d2h", 1, "tolist"),
        ("d2h", 1, "int"), ("d2h", 1, "float"), ("d2h", 1, "bool")]
    assert all("test_gpu_strict.py" in t.where for t in LEDGER.transfers)
    with pytest.raises(ValueError, match="size 1"):
        dev.item()


def test_numpy_functions_cupy_lacks_are_refused(strict_gpu):
    """CuPy's __array_function__/__array_ufunc__ run ``cupy.<name>`` for ``numpy.<name>`` and give
    NotImplemented where CuPy 14.2 has none (np.insert, np.nanpercentile, np.spacing): NumPy raises
    TypeError, nothing runs on the host. Functions CuPy has stay on the device."""
    cp = strict_gpu
    dev = cp.asarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    LEDGER.clear()
    with pytest.raises(TypeError, match="insert"):
        np.insert(dev, 0, 1.0)
    with pytest.raises(TypeError, match="nanpercentile"):
        np.nanpercentile(dev, 50)
    with pytest.raises(TypeError):
        np.spacing(dev)                               # (NumPy's message holds repr(dev): a recorded copy)
    LEDGER.clear()
    both = np.concatenate([dev, dev])                 # cupy.concatenate: a device copy, no transfer
    assert type(both) is cp.ndarray and both.shape == (6, 4) and LEDGER.device_copies == 1
    assert type(np.exp(dev)) is cp.ndarray and LEDGER.transfers == []


def test_dlpack_stream_0_is_taken_by_cupy_with_a_warning_and_refused_by_pytorch(strict_gpu):
    """CuPy 13.6-14.2's ndarray.__dlpack__ takes stream 0 (which the DLPack protocol forbids) as the
    legacy default stream, with a warning; PyTorch 2.13's Tensor.__dlpack__ on CUDA refuses it, and
    refuses 2 (the per-thread default stream)."""
    import torch

    cp = strict_gpu
    dev = cp.asarray(np.arange(6, dtype=np.float32))
    with pytest.warns(UserWarning, match="Stream 0 is passed"):
        assert np.from_dlpack(cp._Capsule(dev.__dlpack__(stream=0))).tolist() == list(range(6))
    t = torch.from_dlpack(dev)
    with pytest.raises(AssertionError, match="unsupported stream on CUDA: 0"):
        t.__dlpack__(stream=0)
    with pytest.raises(BufferError, match="per-thread"):
        t.__dlpack__(stream=2)
    t.__dlpack__(stream=1)
    t.__dlpack__(stream=-1)


def test_cuda_tensor_records_what_copies_to_the_host(strict_gpu):
    """On CUDA, ``.item()``, ``.tolist()``, ``int()``, ``float()``, ``bool()``, use as an index,
    ``.cpu()`` and ``.to("cpu")`` each copy to the host and wait for the stream: each is recorded;
    ``.to`` a dtype or to "cuda" stays on the device."""
    import torch

    cp = strict_gpu
    t = torch.from_dlpack(cp.asarray(np.arange(6, dtype=np.float32).reshape(2, 3)))
    one, index = t[1, 2], t.to(torch.int64)[0, 1]
    LEDGER.clear()
    assert one.item() == 5.0 and t.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert (int(one), float(one), bool(one), "abc"[index]) == (5, 5.0, True, "b")
    assert t.cpu().tolist() == [[0, 1, 2], [3, 4, 5]]          # a plain host tensor: no second record
    host = t.to("cpu")
    assert host.__dlpack_device__()[0] == 1 and host.dtype == torch.float32
    assert t.to(device=torch.device("cpu"), dtype=torch.float16).dtype == torch.float16
    assert [(x.nbytes, x.how) for x in LEDGER.transfers] == [
        (4, "torch.item"), (24, "torch.tolist"), (4, "torch.int"), (4, "torch.float"), (4, "torch.bool"),
        (8, "torch.index"), (24, "torch.cpu"), (24, "torch.to(cpu)"), (24, "torch.to(cpu)")]
    assert all("test_gpu_strict.py" in x.where for x in LEDGER.transfers)
    LEDGER.clear()
    half = t.to(torch.float16)
    assert half.dtype == torch.float16 and half.__dlpack_device__() == (2, 0)
    assert t.to("cuda").__dlpack_device__() == (2, 0) and LEDGER.transfers == []


def test_nvenc_stand_in_reads_chroma_where_ffmpeg_registers_it(tmp_path):
    """FFmpeg's nvenc registers a CUDA frame with NVENC by ``data[0]`` and ``linesize[0]`` only, and
    NVENC reads the NV12 chroma at ``data[0] + linesize[0] * height``: chroma in its own buffer is
    refused (on a GPU, NVENC would encode whatever follows the luma); one buffer is encoded as is."""
    import av
    from gpu_standins import NvencLog, _OutputStandIn, from_dlpack_standin
    from helpers import decode_frames
    from skimage import data, transform

    rgb = (transform.resize(data.astronaut(), (192, 192)) * 255).astype(np.uint8)
    nv12 = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="nv12").to_ndarray()
    h, w = 192, 192
    log = NvencLog()
    from_dlpack = from_dlpack_standin(log)
    out = tmp_path / "nvenc.mkv"
    with av.open(str(out), "w") as c:
        stream = _OutputStandIn(c, log).add_stream("h264_nvenc", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "cuda"
        one = strict_cupy.ndarray(nv12.copy())                        # chroma right after luma
        frame = from_dlpack((one[:h], one[h:].reshape(h // 2, w // 2, 2)), width=w, height=h, stream=7)
        frame.pts, frame.time_base = 0, Fraction(1, 25)
        c.mux(stream.encode(frame))
        split = (strict_cupy.ndarray(nv12[:h].copy()), strict_cupy.ndarray(nv12[h:].copy()))  # two buffers
        frame = from_dlpack(split, width=w, height=h, stream=7)
        frame.pts, frame.time_base = 1, Fraction(1, 25)
        with pytest.raises(AssertionError, match=r"data\[0\] \+ linesize\[0\]\*height"):
            stream.encode(frame)
        c.mux(stream.encode(None))
    with av.open(str(tmp_path / "x264.mkv"), "w") as c:              # libx264 given the same NV12 picture
        ref = c.add_stream("libx264", rate=25)
        ref.width, ref.height, ref.pix_fmt = w, h, "nv12"
        frame = av.VideoFrame.from_ndarray(nv12, format="nv12")
        frame.pts, frame.time_base = 0, Fraction(1, 25)
        for p in ref.encode(frame) + ref.encode(None):
            c.mux(p)
    (got,), (want,) = decode_frames(out), decode_frames(tmp_path / "x264.mkv")
    np.testing.assert_array_equal(got, want)
    assert np.abs(got.astype(int) - rgb).mean() < 8.0 and log.frames == 1 and log.streams == [7, 7]


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
    from trt_anon.redact.gpu import CupyRedactor

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
    ``CudaContext`` for the whole run, every frame made ready on the encoder's own stream (the one FFmpeg
    queues NVENC's input on), chroma right after luma as NVENC reads it; no frame-sized copy either way."""
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
    own = log.contexts[0].cuda_stream   # FFmpeg queues NVENC's input on it: the frames must be ready there
    assert own not in (0, None) and log.streams == [own] * N, (own, set(log.streams))
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


def test_a_live_stream_detects_on_the_gpu(strict_gpu, tmp_path):
    """A live stream with backend="gpu": the GPU detector (PyTorch CUDA here) takes the frames, each uploaded once
    as it comes (``auto`` gathers them on the device up to its next look); nothing frame-sized comes back (the
    frames stay on the host for redaction and x264); every frame is written with its faces covered. (A small
    clip: the stand-in runs the kernels on the CPU, slowly.)"""
    from helpers import decode_frames, frame_problem
    from synth import Face, make_clip

    from trt_anon import Config, live

    clip = make_clip(tmp_path / "cam.mp4", 320, 180, frames=N, faces=[Face(64, (40, 30), (2.0, 0.5)),
                                                                      Face(48, (220, 90), (-1.0, 0.3), enter=20)])
    out = tmp_path / "rec.mkv"
    report = live.stream(str(clip.path), str(out), Config(backend="gpu"), latency=30.0, paced=True, progress=False)
    assert report.backends["detect"] == "torch-cuda-fp16" and report.backends["redact"] == "numpy"
    assert report.frames == N and report.live["dropped"] == 0
    src, written = decode_frames(clip.path), decode_frames(out)
    assert len(written) == N
    for i, (before, after) in enumerate(zip(src, written)):
        assert frame_problem(clip, i, before, after, max_bg=8.0) is None, i
    uploads = frame_sized(LEDGER.h2d(), 180, 320)
    # the warm-up before the source is opened (a 720p frame), once more at the stream's size, then one per frame
    assert len(uploads) == N + 2 and [u.nbytes for u in uploads[:2]] == [720 * 1280 * 3, 180 * 320 * 3], uploads[:3]
    assert frame_sized(LEDGER.d2h(), 180, 320) == []
