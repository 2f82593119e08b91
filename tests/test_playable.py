"""Every output container the CLI accepts decodes with every frame, in order, on increasing times; any
other output name is a one-line error before any work. The clip numbers its frames in a strip below a
real face, and has B-frames (x264's default), which containers without presentation times (AVI, ASF)
would play out of order."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from synth import Face, make_clip, render

import trt_anon
from trt_anon import api
from trt_anon.cli import main

W, H, N, FPS = 192, 112, 24, 30
STRIP, STEP = 12, 8  # a white block at x = 8 * index in the bottom 12 rows tells each frame's number


def numbered_clip(path: Path, vfr: bool = False) -> Path:
    """H.264 with B-frames, frame ``i`` marked by a white block at x = 8 i in a black strip; ``vfr``: frame
    times that wander around 1/30 s as a phone's do (1/90000 s ticks)."""
    tb = Fraction(1, 90000) if vfr else Fraction(1, FPS)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS, options={"crf": "16", "bf": "3"})
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.time_base = vs.codec_context.time_base = tb
        t = 0
        for i, (frame, _, _) in enumerate(render(W, H, [Face(40, (30, 20), (2.0, 0.0))], N)):
            frame[-STRIP:] = 0
            frame[-STRIP + 2:-2, STEP * i + 1:STEP * i + STEP - 1] = 255
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = t, tb
            t += (2970, 3030, 2940, 3000, 3090)[i % 5] if vfr else 1
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return path


def numbers(path: Path) -> tuple[list[int], list[Fraction]]:
    """The number each decoded frame shows, and its presentation time."""
    shown, times = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            strip = f.to_ndarray(format="rgb24")[-STRIP + 4:-4].mean(axis=(0, 2))
            shown.append(int(np.argmax(strip)) // STEP)
            times.append(f.pts * f.time_base)
    return shown, times


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = numbered_clip(tmp_path_factory.mktemp("playable") / "in.mp4")
    assert numbers(path)[0] == list(range(N))
    with av.open(str(path)) as c:  # B-frames: decode order differs from presentation order
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert pts != sorted(pts)
    return path


ACCEPTED = [".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".3gp"]


@pytest.mark.parametrize("ext", ACCEPTED)
def test_every_accepted_container_plays_in_order(clip, tmp_path, ext):
    report = trt_anon.process(clip, tmp_path / f"out{ext}")
    shown, times = numbers(Path(report.output))
    assert shown == list(range(N)), shown
    assert all(b > a for a, b in zip(times, times[1:])), times
    span = times[-1] - times[0]  # a frame period apart, as in the input (Matroska and FLV store milliseconds)
    assert abs(span - Fraction(N - 1, FPS)) <= Fraction(1, 1000), span


def test_avi_is_written_at_its_frame_rate(clip, tmp_path):
    """AVI stores a frame rate, not times: one chunk per frame at 1/30 s (not 1/600 s with empty chunks)."""
    report = trt_anon.process(clip, tmp_path / "out.avi")
    with av.open(report.output) as c:
        s = c.streams.video[0]
        assert s.time_base == Fraction(1, FPS) and s.frames == N
        assert len([p for p in c.demux(s) if p.size]) == N
    assert not report.warnings


def test_variable_frame_rate_into_avi_is_said(tmp_path):
    src = numbered_clip(tmp_path / "vfr.mp4", vfr=True)
    report = trt_anon.process(src, tmp_path / "out.avi")
    shown, times = numbers(Path(report.output))
    assert shown == list(range(N)) and all(b > a for a, b in zip(times, times[1:]))
    said = [w for w in report.warnings if "frame rate" in w and "AVI" in w]
    assert len(said) == 1, report.warnings


def test_a_face_is_covered_in_avi(tmp_path):
    from helpers import check_redacted

    clip = make_clip(tmp_path / "in.mp4", 320, 180, frames=12, audio=1, faces=[Face(64, (40, 30), (3.0, 0.5))])
    report = trt_anon.process(clip.path, tmp_path / "out.avi")
    check_redacted(clip, clip.path, Path(report.output))


@pytest.mark.parametrize("name", ["out.gif", "out.mp3", "out.wav", "out.ts", "out.mpg", "out.ogv", "out.wmv",
                                  "out.xyz"])
def test_other_outputs_are_one_line_errors_before_any_work(clip, tmp_path, capsys, monkeypatch, name):
    def no_work(*args, **kwargs):
        raise AssertionError("work started for an output that cannot be written")

    monkeypatch.setattr(api, "_video", no_work)
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(clip), "-o", str(out / name), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" not in err and Path(name).suffix in err, err
    assert list(out.iterdir()) == []
