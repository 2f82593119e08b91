"""The frame-level API (``trt_anon.Anonymizer``): the same boxes and pixels as ``process()``, frames
``lookback`` late, the caller's buffer free to reuse, bad input refused."""
from __future__ import annotations

import json

import av
import numpy as np
import pytest
from synth import Face, make_clip

import trt_anon
from trt_anon.decode import PyAVDecoder
from trt_anon.redact import pixel_mask

# one face from the start, one that comes in mid-clip (back-filled into the frames before its first detection)
FACES = [Face(70, (60, 60), (3.0, 0.5)), Face(40, (450, 180), (-2.0, 0.0), enter=25, flip=True)]


def decoded(path, batch=7) -> list[np.ndarray]:
    """The clip's frames as process() decodes them, in batches of ``batch``."""
    with av.open(str(path)) as c:
        return [b.frames.copy() for b in PyAVDecoder(c, batch)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("frames") / "in.mp4", 640, 360, frames=60, faces=FACES)


@pytest.fixture(scope="module")
def whole(clip, tmp_path_factory):
    """process() on the clip: its JSON boxes and decoded output frames."""
    d = tmp_path_factory.mktemp("whole")
    trt_anon.process(clip.path, d / "out.mp4", json_path=str(d / "out.json"), backend="cpu")
    frames = json.loads((d / "out.json").read_text())["frames"]
    with av.open(str(d / "out.mp4")) as c:
        out = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return [f["redacted"] for f in frames], out


def run(anon, batches) -> tuple[list, list, list]:
    frames, boxes, starts = [], [], []
    for b in batches:
        r = anon.push(b)
        frames += list(r.frames)
        boxes += r.boxes
        starts.append((r.start, len(r)))
    r = anon.flush()
    frames += list(r.frames)
    boxes += r.boxes
    starts.append((r.start, len(r)))
    return frames, boxes, starts


def rounded(boxes):
    return [[[round(float(v), 1) for v in b] for b in frame] for frame in boxes]


def test_same_boxes_and_pixels_as_process(clip, whole):
    json_boxes, out = whole
    batches = decoded(clip.path, batch=8)  # process()'s batches on the CPU: detect_every="auto" plans per batch
    frames, boxes, starts = run(trt_anon.Anonymizer(backend="cpu"), batches)
    assert len(frames) == len(boxes) == 60
    assert rounded(boxes) == json_boxes
    assert any(len(b) == 2 for b in boxes[:25]), "the face coming in was not back-filled"
    # frames handed back in order, without gaps
    assert [s for s, n in starts if n] == list(np.cumsum([0] + [n for _, n in starts if n])[:-1])
    src = np.concatenate(batches)
    for i, (f, b) in enumerate(zip(frames, boxes)):
        inside = pixel_mask(b, 25, *f.shape[:2]) if len(b) else np.zeros(f.shape[:2], bool)
        assert (f[~inside] == src[i][~inside]).all(), f"frame {i}: pixels outside the boxes changed"
        if inside.any():
            assert (f[inside] != src[i][inside]).any(), f"frame {i}: nothing redacted"
        # process() wrote the same picture, up to x264 at crf 18
        assert np.abs(f.astype(int) - out[i].astype(int)).mean() < 3.0, i


def test_frames_come_back_lookback_late(clip):
    batches = decoded(clip.path, batch=10)
    anon = trt_anon.Anonymizer(backend="cpu", lookback=30)
    got = [len(anon.push(b)) for b in batches]
    assert got == [0, 0, 0, 10, 10, 10]
    assert len(anon.flush()) == 30
    assert len(anon.push(batches[0])) == 0  # after flush, a new stream: the tracker starts afresh


def test_the_callers_buffer_may_be_reused(clip):
    """Decode loops reuse one buffer; a frame still waiting must not change with it."""
    batches = decoded(clip.path)
    expected, _, _ = run(trt_anon.Anonymizer(backend="cpu"), batches)
    anon = trt_anon.Anonymizer(backend="cpu")
    buf = np.empty_like(batches[0])
    frames = []
    for b in batches:
        view = buf[:len(b)]
        view[...] = b
        frames += [f.copy() for f in anon.push(view).frames]
        buf[...] = 0  # the caller's next decode overwrites its buffer
    frames += list(anon.flush().frames)
    assert len(frames) == len(expected) and all((a == b).all() for a, b in zip(frames, expected))


def test_eyes_target_and_styles_come_through(clip):
    batches = decoded(clip.path)
    _, boxes, _ = run(trt_anon.Anonymizer(backend="cpu", target="eyes"), batches)
    _, faces, _ = run(trt_anon.Anonymizer(backend="cpu"), batches)
    pairs = [(e, f) for e, f in zip(boxes, faces) if len(e) and len(f)]
    assert pairs and all((e[:, 3] - e[:, 1]).max() < (f[:, 3] - f[:, 1]).max() for e, f in pairs)
    frames, _, _ = run(trt_anon.Anonymizer(backend="cpu", style="solid", fill_color="#ff0000"), batches[:5])
    assert any(((f == [255, 0, 0]).all(axis=2)).any() for f in frames)


def test_bad_frames_are_refused():
    anon = trt_anon.Anonymizer(backend="cpu")
    with pytest.raises(trt_anon.InputError, match=r"\(N, H, W, 3\)"):
        anon.push(np.zeros((2, 64, 64), np.uint8))
    with pytest.raises(trt_anon.InputError):
        anon.push(np.zeros((2, 64, 64, 3), np.float32))
    anon.push(np.zeros((2, 64, 96, 3), np.uint8))
    with pytest.raises(trt_anon.InputError, match="size"):
        anon.push(np.zeros((2, 96, 64, 3), np.uint8))
    with pytest.raises(trt_anon.ConfigError, match="backend"):
        trt_anon.Anonymizer(backend="gpu").push(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(trt_anon.ConfigError):
        trt_anon.Anonymizer(style="sepia")
    assert len(trt_anon.Anonymizer(backend="cpu").push(np.zeros((0, 64, 64, 3), np.uint8))) == 0
