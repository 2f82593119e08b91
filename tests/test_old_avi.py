"""Old real-world AVIs: DivX/Xvid packed B-frames with AC3, and frame sizes that change."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import pytest
from helpers import (
    assert_copied,
    audio_packets,
    cell_deviation,
    check_redacted,
    copied_packets,
    decode_frames,
    video_times,
)
from synth import DIVX_USER_DATA, Face, make_old_avi, render

import trt_anon

FACES = [Face(64, (30, 30), (3.0, 0.5))]


@pytest.fixture(scope="module")
def old_avi(tmp_path_factory):
    return make_old_avi(tmp_path_factory.mktemp("old") / "divx.avi", 320, 192, frames=30, fps=25, faces=FACES)


def vops(data: bytes) -> int:
    return data.count(b"\x00\x00\x01\xb6")


def test_the_test_file_is_packed_like_divx(old_avi):
    """The file really has what old players met: packets holding a P- and a B-frame, N-VOP
    placeholders, DivX's 'p' flag, and decoder times out of order (as real DivX files have)."""
    with av.open(str(old_avi.path)) as c:
        packets = [bytes(p) for p in c.demux(video=0) if p.size]
    assert DIVX_USER_DATA in packets[0]
    assert len(packets) == 30
    assert sum(vops(p) == 2 for p in packets) >= 8          # P+B packed together
    assert sum(len(p) <= 19 for p in packets) >= 8          # N-VOPs
    times = video_times(old_avi.path)                       # in the decoder's order
    assert times != sorted(times) and len(set(times)) == 30


def test_frame_times_are_the_presentation_times(old_avi, tmp_path):
    report = trt_anon.process(old_avi.path, tmp_path / "out.mp4")
    times = video_times(tmp_path / "out.mp4")
    assert times == sorted(video_times(old_avi.path))       # exact, the first one included (1/25 s)
    assert all(b - a == Fraction(1, 25) for a, b in zip(times, times[1:]))
    assert not any("moved forward" in w for w in report.warnings), report.warnings
    check_redacted(old_avi, old_avi.path, tmp_path / "out.mp4", max_bg=4.0)


def test_audio_packets_kept_or_reported(old_avi, tmp_path):
    """MKV holds every AC3 packet, partial first and last frames too; MP4 cannot store the partial
    first frame (not a sync frame): it is the only one missing, and the report says so."""
    src = audio_packets(old_avi.path)[0]
    assert len(src[0]) == 729 and len(src[-1]) == 300 and src[0][:2] != b"\x0b\x77"
    mkv = trt_anon.process(old_avi.path, tmp_path / "out.mkv")
    assert_copied(old_avi.path, tmp_path / "out.mkv")
    assert not mkv.warnings
    assert [round(float(t), 3) for t in video_times(tmp_path / "out.mkv")] == \
        [round(float(t), 3) for t in sorted(video_times(old_avi.path))]   # Matroska keeps milliseconds
    mp4 = trt_anon.process(old_avi.path, tmp_path / "out.mp4")
    (got,), want = copied_packets(tmp_path / "out.mp4"), copied_packets(old_avi.path)[0][1:]
    assert [p[0] for p in got] == [p[0] for p in want]
    # each at its time, to the tick of the movie timescale the MP4 edit list starting the track is written in
    assert all(abs(g - w) <= Fraction(1, 12800) for pg, pw in zip(got, want) for g, w in zip(pg[1:], pw[1:]))
    (warning,) = [w for w in mp4.warnings if "not copied" in w]
    assert "729 bytes at 0.000 s" in warning and ".mkv" in warning


def _size_change_avi(path: Path, sizes: list[tuple[int, int]], frames: int, fps: int = 15):
    """MPEG-4 in AVI whose VOL header changes the picture size mid-stream (what a damaged or
    spliced stream does), with per-frame ground truth in each part's own size."""
    packets, boxes = [], []
    for w, h in sizes:
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, fps), Fraction(fps)
        faces = [Face(w * 0.4, (w * 0.1, h * 0.15), (w / 80, 0))]
        for i, (frame, gt, _) in enumerate(render(w, h, faces, frames)):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            vf.pts = i
            packets += [bytes(p) for p in enc.encode(vf)]
            boxes.append([tuple(v * sizes[0][0] / w if k % 2 == 0 else v * sizes[0][1] / h for k, v in enumerate(b))
                          for b in gt])
        packets += [bytes(p) for p in enc.encode(None)]
    with av.open(str(path), "w", format="avi") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = sizes[0][0], sizes[0][1], "yuv420p"
        for i, data in enumerate(packets):
            p = av.Packet(data)
            p.stream, p.time_base, p.pts, p.dts = vs, Fraction(1, fps), i, i
            out.mux(p)
    return boxes


def test_frame_size_change_scaled_to_the_first_size(tmp_path):
    """Was ``ValueError: all input arrays must have the same shape``. Now every frame is scaled
    to the first frame's size (as ffmpeg does), redacted as written, and the report says so."""
    src = tmp_path / "switch.avi"
    boxes = _size_change_avi(src, [(320, 192), (256, 160)], frames=12)
    assert {f.shape for f in decode_frames(src)} == {(192, 320, 3), (160, 256, 3)}
    report = trt_anon.process(src, tmp_path / "out.mp4", batch_size=8)
    frames = decode_frames(tmp_path / "out.mp4")
    assert len(frames) == 24 and {f.shape for f in frames} == {(192, 320, 3)}
    assert any("frame 12 (320x192 -> 256x160); 12 frame(s) scaled to 320x192" in w for w in report.warnings), \
        report.warnings
    for i, (frame, gt) in enumerate(zip(frames, boxes)):
        for box in gt:
            assert cell_deviation(frame, box) < 5.0, f"frame {i}: face {box} not mosaicked"


def test_unknown_codec_in_a_damaged_header(tmp_path):
    """Was ``AttributeError: 'NoneType' object has no attribute 'width'``: a video stream whose
    codec FFmpeg does not know is refused in one line; an audio one is dropped with a warning."""
    from synth import make_clip
    from test_cli import assert_one_line_error, cli, leftovers
    clip = make_clip(tmp_path / "src.mkv", 160, 96, frames=8, faces=FACES)
    data = clip.path.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    bad_video = tmp_path / "in" / "video.mkv"
    bad_video.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_MPEG4/ISO/XYZ"))
    r = cli(bad_video, "-o", tmp_path / "out", "-q")
    assert_one_line_error(r, match="video stream #0 has an unknown codec")
    assert leftovers(tmp_path / "out") == []
    bad_audio = tmp_path / "in" / "audio.mkv"
    bad_audio.write_bytes(data.replace(b"A_AAC", b"A_XYZ"))
    report = trt_anon.process(bad_audio, tmp_path / "out" / "audio.mkv")
    assert any("stream #1 (audio) dropped: unknown codec" in w for w in report.warnings), report.warnings
    assert len(decode_frames(tmp_path / "out" / "audio.mkv")) == 8


def test_partial_ac3_frame_mid_stream_into_mp4(old_avi, tmp_path):
    """An AC3 packet in the middle that lost its head (here in an MKV, which keeps packets as they
    are): FFmpeg's MP4 muxer fails on it ("Invalid data"), which refused the whole file. It is
    left out and reported."""
    src = tmp_path / "mid.mkv"
    with av.open(str(old_avi.path)) as c, av.open(str(src), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in c.streams}
        k = 0
        for p in c.demux():
            if not p.size:
                continue
            index = p.stream.index
            if p.stream.type == "audio":
                k += 1
                if k == 10:
                    q = av.Packet(bytes(p)[100:])
                    q.pts, q.dts, q.time_base = p.pts, p.dts, p.time_base
                    p = q
            p.stream = streams[index]
            out.mux(p)
    packets = audio_packets(src)[0]
    assert len(packets[9]) == 668 and packets[9][:2] != b"\x0b\x77"
    report = trt_anon.process(src, tmp_path / "out.mp4")
    assert audio_packets(tmp_path / "out.mp4") == [packets[1:9] + packets[10:]]
    (warning,) = [w for w in report.warnings if "not copied" in w]
    assert "2 packet(s)" in warning and "668 bytes" in warning
