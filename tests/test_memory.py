"""Large frames: smaller CPU batches, and the frames waiting for back-fill decoded a second time instead of
held. Neither may change a pixel, a timestamp or a box of the output."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_copied, decode_frames, video_times
from synth import Face, make_clip

import trt_anon
from trt_anon import stages
from trt_anon.config import Config
from trt_anon.errors import InputError
from trt_anon.planar import Planar

# a face from the start, and one that comes in small mid-clip and is back-filled into the frames before it
FACES = [Face(70, (60, 60), (3.0, 0.5)), Face(30, (450, 180), (-2.0, 0.0), enter=25, flip=True)]


def test_cpu_batches_hold_about_eight_1080p_frames():
    assert Config().batch_for(gpu=False, pixels=1280 * 720) == 8
    assert Config().batch_for(gpu=False, pixels=1920 * 1080) == 8
    assert Config().batch_for(gpu=False, pixels=2560 * 1440) == 4
    assert Config().batch_for(gpu=False, pixels=3840 * 2160) == 2
    assert Config().batch_for(gpu=False, pixels=7680 * 4320) == 1
    assert Config().batch_for(gpu=True, pixels=3840 * 2160) == 32  # the GPU's memory is not the host's
    assert Config(batch_size=8).batch_for(gpu=False, pixels=3840 * 2160) == 8  # the option wins


def test_large_frames_are_decoded_twice_not_held():
    """RGB: 1080p at the default lookback is held (~260 MiB); 1440p and 4K are not; less lookback holds more.
    The decoder's own 4:2:0 pixels take half: 1440p is held too."""
    class Info:
        is_image = False

    class Decoder:
        deep = False
        layout = None
        planar = ()

    def replays(w, h, planar=False, **cfg):
        info = Info()
        info.width, info.height = w, h
        decoder = Decoder()
        if planar:
            decoder.layout = Planar("yuv420p", w, h)
        c = Config(backend="cpu", batch_size=Config(**cfg).batch_for(False, w * h), **cfg)
        return stages.replay_decoder(Path("/nonexistent"), decoder, info, c) is not None

    assert not replays(1920, 1080)
    with pytest.raises(InputError):  # 1440p as RGB, 4K either way: a second decoder over the file is opened
        replays(2560, 1440)
    assert not replays(2560, 1440, planar=True)
    with pytest.raises(InputError):
        replays(3840, 2160, planar=True)
    assert not replays(3840, 2160, lookback=0)


def run(path: Path, out: Path, monkeypatch, hold_bytes: int) -> tuple:
    monkeypatch.setattr(stages, "HOLD_BYTES", hold_bytes)
    used = []
    frames = stages.Replay.frames
    monkeypatch.setattr(stages.Replay, "frames", lambda self: used.append(1) or frames(self))
    report = trt_anon.process(path, out, json_path=str(out.with_suffix(".json")), batch_size=4)
    boxes = [f["redacted"] for f in json.loads(out.with_suffix(".json").read_text())["frames"]]
    return report, boxes, bool(used)


def test_second_decode_writes_the_same_output(tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "in.mp4", 640, 360, frames=60, faces=FACES)
    held, held_boxes, replayed = run(clip.path, tmp_path / "held.mp4", monkeypatch, 2**40)
    assert not replayed
    twice, twice_boxes, replayed = run(clip.path, tmp_path / "twice.mp4", monkeypatch, 0)
    assert replayed
    assert held_boxes == twice_boxes
    assert any(b for b in held_boxes[:25]) and any(len(b) == 2 for b in held_boxes[20:30])  # back-fill ran
    a, b = decode_frames(tmp_path / "held.mp4"), decode_frames(tmp_path / "twice.mp4")
    assert len(a) == len(b) == 60
    assert all((x == y).all() for x, y in zip(a, b))
    assert video_times(tmp_path / "twice.mp4") == video_times(clip.path)
    assert_copied(clip.path, tmp_path / "twice.mp4")
    assert (held.frames, held.faces, held.redacted_boxes) == (twice.frames, twice.faces, twice.redacted_boxes)


@pytest.mark.parametrize("change", ["time", "missing"])
def test_second_decode_that_disagrees_fails_closed(tmp_path, monkeypatch, change):
    """A file that decodes differently the second time (changed while read) ends the run; nothing is written.
    ``time``: every frame comes again, one with another time; ``missing``: one frame does not come again."""
    clip = make_clip(tmp_path / "in.mp4", 320, 180, frames=30, faces=FACES[:1])
    monkeypatch.setattr(stages, "HOLD_BYTES", 0)
    frames = stages.Replay.frames
    seen = []

    def changed(self):
        for i, (frame, t) in enumerate(frames(self)):
            seen.append(i)
            if i != 17:
                yield frame, t
            elif change == "time":
                yield frame, t + 1

    monkeypatch.setattr(stages.Replay, "frames", changed)
    out = tmp_path / "out.mp4"
    with pytest.raises(InputError, match=r"second decode of the input disagrees .* at time \d+ \(got \d+\)"):
        trt_anon.process(clip.path, out)
    assert 17 in seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]
