"""The frame-level API on the GPU path, rehearsed on the CPU (tests/strict_cupy.py, CPU PyTorch as CUDA): CuPy
and PyTorch CUDA frames stay on the device (only the detector's candidate boxes come to the host) and come back
as the type they came in, redacted outside nothing; PyTorch CPU tensors take the CPU path."""
from __future__ import annotations

import numpy as np
import pytest
from strict_cupy import LEDGER
from synth import Face, make_clip
from test_gpu_strict import assert_only_boxes_come_to_the_host, strict_gpu  # noqa: F401 (a fixture)

import trt_anon
from trt_anon.decode import PyAVDecoder
from trt_anon.redact import pixel_mask

W, H = 640, 360


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    import av

    clip = make_clip(tmp_path_factory.mktemp("gpu_frames") / "in.mp4", W, H, frames=24,
                     faces=[Face(80, (60, 60), (4.0, 0.5)), Face(56, (420, 160), (-2.0, 1.0), flip=True)])
    with av.open(str(clip.path)) as c:
        return [b.frames.copy() for b in PyAVDecoder(c, 8)]


def check_redacted(host_frames, boxes, src):
    assert len(host_frames) == len(boxes) == len(src)
    assert sum(len(b) for b in boxes) > 0
    for f, b, s in zip(host_frames, boxes, src):
        inside = pixel_mask(b, 25, H, W) if len(b) else np.zeros((H, W), bool)
        assert (f[~inside] == s[~inside]).all()
        assert not inside.any() or (f[inside] != s[inside]).any()


def test_cupy_frames_stay_on_the_device(strict_gpu, batches):  # noqa: F811 (the fixture)
    cp = strict_gpu
    anon = trt_anon.Anonymizer(lookback=5)
    device = [cp.asarray(b) for b in batches]
    LEDGER.clear()
    out, boxes = [], []
    for b in device:
        r = anon.push(b)
        assert type(r.frames) is cp.ndarray
        out.append(r.frames)
        boxes += r.boxes
    r = anon.flush()
    out.append(r.frames)
    boxes += r.boxes
    assert anon.gpu and not [t for t in LEDGER.h2d() if t.nbytes >= H * W], "frames uploaded again"
    assert_only_boxes_come_to_the_host(LEDGER)
    check_redacted(np.concatenate([cp.asnumpy(o) for o in out]), boxes, np.concatenate(batches))


@pytest.mark.parametrize("every", [3, "auto"])
def test_fewer_looks_take_a_subset_of_the_batch_on_the_device(strict_gpu, batches, every):  # noqa: F811
    """The detector gets the frames it looks at as one device batch; only boxes (and, under auto, thumbnails of a
    few KB) come to the host."""
    cp = strict_gpu
    anon = trt_anon.Anonymizer(lookback=5, detect_every=every)
    looked: list[int] = []
    device = [cp.asarray(b) for b in batches]
    LEDGER.clear()
    out, boxes = [], []
    for k, b in enumerate(device):
        r = anon.push(b)
        if k == 0:  # the detector is made on the first batch: count the frames it is given from now on
            inner = anon.detector
            anon.detector = lambda frames: (looked.append(len(frames)), inner(frames))[1]
        out.append(r.frames)
        boxes += r.boxes
    r = anon.flush()
    out.append(r.frames)
    boxes += r.boxes
    assert 0 < sum(looked) < sum(len(b) for b in batches[1:]) + 1
    assert not [t for t in LEDGER.h2d() if t.nbytes >= H * W], "frames uploaded again"
    small = [t for t in LEDGER.d2h() if t.nbytes < H * W]
    assert small and all("centerface.py" in t.where or "cadence.py" in t.where for t in small)
    check_redacted(np.concatenate([cp.asnumpy(o) for o in out]), boxes, np.concatenate(batches))


def test_pytorch_cuda_tensors_come_back_as_tensors(strict_gpu, batches):  # noqa: F811 (the fixture)
    import torch

    cp = strict_gpu
    anon = trt_anon.Anonymizer(lookback=5)
    tensors = [torch.from_dlpack(cp.asarray(b)) for b in batches]  # CUDA tensors (stand-ins)
    LEDGER.clear()
    out, boxes = [], []
    for t in tensors:
        r = anon.push(t)
        assert isinstance(r.frames, torch.Tensor) and r.frames.__dlpack_device__()[0] == 2
        out.append(r.frames)
        boxes += r.boxes
    r = anon.flush()
    out.append(r.frames)
    boxes += r.boxes
    assert_only_boxes_come_to_the_host(LEDGER)
    host = np.concatenate([cp.asnumpy(cp.from_dlpack(o)) for o in out])
    check_redacted(host, boxes, np.concatenate(batches))


def test_pytorch_cpu_tensors_take_the_cpu_path(batches):
    torch = pytest.importorskip("torch")
    anon = trt_anon.Anonymizer(backend="cpu", lookback=5)
    out, boxes = [], []
    for b in batches:
        r = anon.push(torch.from_numpy(b))
        assert isinstance(r.frames, torch.Tensor) and r.frames.device.type == "cpu"
        out.append(r.frames.numpy())
        boxes += r.boxes
    r = anon.flush()
    out.append(r.frames.numpy())
    boxes += r.boxes
    assert not anon.gpu
    check_redacted(np.concatenate(out), boxes, np.concatenate(batches))


def test_a_face_in_front_is_put_back_on_the_device_as_on_the_cpu(strict_gpu):  # noqa: F811 (the fixture)
    """A kept face in front of a redacted one (tests/test_in_front.py) on CuPy frames: the same pixels as the CPU
    path, the frame never leaving the device (only the small mask of what is put back goes up)."""
    from test_in_front import anonymizer, regions, scene

    from trt_anon.config import Config
    from trt_anon.redact import box_margin
    from trt_anon.redact.gpu import CupyRedactor

    cp = strict_gpu
    frame, boxes = scene()
    det = regions(boxes, [0.6, 0.9], [False, True])
    config = Config()
    ref, _ = anonymizer(config).redact(frame[None].copy(), [det])
    anon = trt_anon.Anonymizer(config, detector=object(),
                               redactor=CupyRedactor(config.mosaic_cell, config.style, config.fill_color,
                                                     box_margin(config)))
    LEDGER.clear()
    out, drawn = anon.redact(cp.asarray(frame[None]), [det])
    assert type(out) is cp.ndarray
    assert not LEDGER.d2h(), "pixels came to the host"
    np.testing.assert_array_equal(cp.asnumpy(out), ref)
    assert (ref != anonymizer(config).redactor(frame[None].copy(), drawn)).any()  # (the carve did something)
