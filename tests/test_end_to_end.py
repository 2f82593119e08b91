"""Whole runs on real-face clips: frames, timing and audio kept; every face covered; background kept."""
from __future__ import annotations

import json

import pytest
from helpers import assert_copied, audio_packets, check_redacted, decode_frames, video_times

import trt_anon


@pytest.mark.parametrize("name", ["moving", "enter_leave", "two", "small"])
def test_faces_mosaicked_and_background_kept(clips, tmp_path, name):
    clip = clips[name]
    out = tmp_path / f"{name}.anon.mp4"
    report = trt_anon.process(clip.path, out)
    assert out.exists()
    check_redacted(clip, clip.path, out)
    assert report.frames == len(clip.boxes)
    assert report.backends == {"decode": "pyav", "detect": "onnxruntime-int8", "redact": "numpy", "encode": "libx264"}


def test_frames_timestamps_and_audio_identical(clips, tmp_path):
    clip = clips["moving"]
    out = tmp_path / "moving.anon.mp4"
    trt_anon.process(clip.path, out)
    assert video_times(out) == video_times(clip.path)
    src_audio = audio_packets(clip.path)
    assert len(src_audio) == 1 and len(src_audio[0]) > 50
    assert_copied(clip.path, out)  # packet for packet, byte for byte, each at its time


@pytest.mark.parametrize("container", [".mp4", ".mkv"])
def test_hevc_output(clips, tmp_path, container):
    import av

    clip = clips["moving"]
    out = tmp_path / f"moving.anon{container}"
    report = trt_anon.process(clip.path, out, codec="hevc")
    assert report.backends["encode"] == "libx265"
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.name == "hevc" and cc.pix_fmt == "yuv420p"
        if container == ".mp4":
            assert cc.codec_tag == "hvc1"  # what Apple's players need in MP4
    src, got = video_times(clip.path), video_times(out)
    if container == ".mkv":  # Matroska: millisecond timestamps, none negative (the AAC priming shifts all streams)
        assert len(got) == len(src) and all(abs((g - got[0]) - s) <= 0.001 for g, s in zip(got, src))
    else:
        assert got == src
    assert_copied(clip.path, out)
    check_redacted(clip, clip.path, out)


def test_default_output_beside_input_and_input_untouched(clips, tmp_path):
    import hashlib
    import shutil

    src = tmp_path / "my clip é.mp4"
    shutil.copy(clips["two"].path, src)
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    report = trt_anon.process(src)
    assert report.output == str(tmp_path / "my clip é.anon.mp4")
    assert (tmp_path / "my clip é.anon.mp4").exists()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my clip é.anon.mp4", "my clip é.mp4"]


def test_json_has_every_frame_and_the_report(clips, tmp_path):
    clip = clips["two"]
    js = tmp_path / "dets.json"
    report = trt_anon.process(clip.path, tmp_path / "o.mp4", json_path=js)
    data = json.loads(js.read_text())
    assert [f["frame"] for f in data["frames"]] == list(range(len(clip.boxes)))
    assert data["report"]["frames"] == report.frames
    assert max(len(f["redacted"]) for f in data["frames"]) == 2
    assert data["report"]["backends"]["detect"] == "onnxruntime-int8"
    # the report in the JSON is the one the API returns: timing and warnings included
    assert data["report"]["wall"] == report.wall > 0 and data["report"]["fps"] == round(report.fps, 2) > 0
    webm = trt_anon.process(clip.path, tmp_path / "o.webm", json_path=js, overwrite=True)
    assert any("written as vp9" in w for w in webm.warnings)
    assert json.loads(js.read_text())["report"]["warnings"] == webm.warnings


@pytest.mark.parametrize("every", [1, "auto"])
def test_eyes_target_covers_only_the_eye_band(clips, tmp_path, every):
    """The eyes are covered in every frame and the mouth is left. With ``auto`` the band of a frame not looked at
    is interpolated and grown by a quarter of the motion between its looks, so where it reaches the next row of
    cells the mouth is covered too (this face moves 4 px a frame): on few frames, never the eyes left."""
    from helpers import cell_deviation

    clip = clips["moving"]
    out = tmp_path / "eyes.mp4"
    trt_anon.process(clip.path, out, target="eyes", detect_every=every)
    frames = decode_frames(out)
    assert len(frames) == len(clip.boxes)
    mouth_covered = []
    for i, (frame, (box,)) in enumerate(zip(frames, clip.boxes)):
        x1, y1, x2, y2 = box
        h = y2 - y1
        # the astronaut's eyes sit at 36-40% of the face box height; the mouth at ~70%
        eyes = (x1 + 0.2 * (x2 - x1), y1 + 0.33 * h, x2 - 0.2 * (x2 - x1), y1 + 0.43 * h)
        mouth = (x1 + 0.3 * (x2 - x1), y1 + 0.75 * h, x2 - 0.3 * (x2 - x1), y1 + 0.85 * h)
        assert cell_deviation(frame, eyes) < 4.0, f"frame {i}: eyes not covered"
        if cell_deviation(frame, mouth) <= 8.0:
            mouth_covered.append(i)
    assert len(mouth_covered) <= (0 if every == 1 else len(frames) // 4), f"mouth covered in eyes mode: {mouth_covered}"


def test_still_images(tmp_path):
    import av
    import numpy as np
    from helpers import cell_deviation
    from skimage import data
    from synth import FACE

    for ext in ("png", "jpg"):
        src = tmp_path / f"astronaut.{ext}"
        av.VideoFrame.from_ndarray(data.astronaut()).save(str(src))
        report = trt_anon.process(src)
        out = tmp_path / f"astronaut.anon.{ext}"
        assert report.output == str(out) and report.frames == 1
        with av.open(str(out)) as c:
            img = next(c.decode(video=0)).to_ndarray(format="rgb24")
        assert img.shape == (512, 512, 3)
        assert cell_deviation(img, FACE) < (1.0 if ext == "png" else 4.0)
        orig = data.astronaut().astype(np.int16)
        assert np.abs(orig[400:, 400:] - img[400:, 400:]).mean() < (0.5 if ext == "png" else 4.0)


def test_output_has_a_normal_file_mode(clips, tmp_path):
    import os
    import stat

    out = tmp_path / "mode.mp4"
    trt_anon.process(clips["two"].path, out)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask


def test_ground_truth_counts_the_part_of_a_face_in_view(tmp_path):
    """A face half behind another: only its pixels in view must be mosaicked (the face in front's hair and
    shoulders over it are no part of it), and a face mostly hidden (< 40% in view) is not counted."""
    import numpy as np
    from helpers import cell_deviation, faces_to_check, frame_problem
    from synth import Clip, Face, hide, in_view, render

    from trt_anon.redact import mosaic

    a = Face(120, (300, 200))
    half, most = hide(a, Face(100, (560, 230), source="hopper"), 0.5, 960, 540), \
        hide(a, Face(100, (560, 230), source="hopper"), 0.7, 960, 540)
    for front, share in ((half, 0.5), (most, 0.3)):
        (seen, got), _ = in_view([a, front], 0, 960, 540)
        assert got == pytest.approx(share, abs=0.01) and seen[:, 0].all() and not seen[:, -1].any()
    clip = Clip(tmp_path / "x.mp4", [next(render(960, 540, [a, half], 1))[1]], [a, half], (960, 540))
    frame = next(render(960, 540, [a, half], 1))[0]
    (box, shown), (front_box, _) = faces_to_check(clip, 0)
    assert shown.mean() == pytest.approx(0.5, abs=0.01)
    x1, y1, x2, y2 = box
    in_view_only = mosaic(frame.copy(), np.array([[x1, y1, x1 + 0.5 * (x2 - x1), y2], front_box]), 25)
    assert frame_problem(clip, 0, frame, in_view_only) is None
    assert cell_deviation(in_view_only, box) > 4  # what reading the whole box said: "not mosaicked"
    strip_left = mosaic(frame.copy(), np.array([[x1 + 30, y1, x2, y2], front_box]), 25)
    assert "not mosaicked" in frame_problem(clip, 0, frame, strip_left)
    mostly_hidden = Clip(tmp_path / "y.mp4", [next(render(960, 540, [a, most], 1))[1]], [a, most],
                                        (960, 540))
    assert len(faces_to_check(mostly_hidden, 0)) == 1   # only the face in front


def test_face_half_behind_another_is_covered(tmp_path):
    """A 120 px face 60% behind a 100 px head standing still: the detector finds it smaller than it is
    (its box short of its chin), and every pixel of it in view must still be covered."""
    from synth import Face, hide, make_clip

    a = Face(120, (850, 420))
    clip = make_clip(tmp_path / "half.mp4", 1280, 720, frames=6, audio=0, crf=18,
                     faces=[a, hide(a, Face(100, (1150, 438), source="hopper"), 0.6, 1280, 720)])
    out = tmp_path / "half.anon.mp4"
    trt_anon.process(clip.path, out)
    check_redacted(clip, clip.path, out)


@pytest.mark.parametrize("progress", [True, False, None])
def test_progress_is_a_bar_or_none(clips, tmp_path, capsys, progress):
    """``process(progress=True)`` shows a bar on stderr, as ``live.stream`` and ``process_many`` do; False or None
    none; the output is the same."""
    report = trt_anon.process(clips["two"].path, tmp_path / "out.mp4", progress=progress)
    assert report.frames == len(decode_frames(tmp_path / "out.mp4"))
    err = capsys.readouterr().err
    assert (f"{report.frames}/{report.frames}" in err) == bool(progress), err
