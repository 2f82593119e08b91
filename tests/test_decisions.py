"""Review and fix: a first run's --json file, edited (a person kept visible, a missed region added), rendered
again without detecting; and every way a decisions file is refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import decode_frames

import trt_anon
from trt_anon.cli import main

ADDED = (5, [300, 20, 380, 100], 20, [330, 20, 410, 100])  # a region the detector "missed": frames 5 to 20


def _diff(a: np.ndarray, b: np.ndarray, box) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2]).mean())


@pytest.fixture(scope="module")
def first(clips, tmp_path_factory):
    d = tmp_path_factory.mktemp("decide")
    clip = clips["two"]
    trt_anon.process(clip.path, d / "first.mp4", json_path=str(d / "first.json"))
    return clip, d, json.loads((d / "first.json").read_text())


def _track_of(data: dict, box) -> int:
    """The track whose face in frame 10 is nearest the ground-truth ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    def distance(face: dict) -> float:
        x1, y1, x2, y2 = face["box"]
        return abs((x1 + x2) / 2 - cx) + abs((y1 + y2) / 2 - cy)

    return min(data["frames"][10]["faces"], key=distance)["track"]


def test_every_face_has_a_track_and_the_tracks_are_listed(first):
    clip, _, data = first
    ids = {f["track"] for frame in data["frames"] for f in frame["faces"]}
    assert ids == {t["id"] for t in data["tracks"]} and len(ids) >= 2
    assert all(t["action"] == "redact" and t["first"] <= t["last"] and t["frames"] > 0 for t in data["tracks"])
    assert _track_of(data, clip.boxes[10][0]) != _track_of(data, clip.boxes[10][1])


def test_the_first_runs_json_renders_the_first_output_again_without_detecting(first, tmp_path):
    clip, d, _ = first
    report = trt_anon.process(clip.path, tmp_path / "again.mp4", decisions_path=str(d / "first.json"),
                              json_path=str(tmp_path / "again.json"))
    assert report.backends["detect"].startswith("none")
    rects = [f["redacted"] for f in json.loads((tmp_path / "again.json").read_text())["frames"]]
    first_rects = [f["redacted"] for f in json.loads((d / "first.json").read_text())["frames"]]
    assert len(rects) == len(first_rects)  # the same rectangles (the JSON's boxes are rounded to 0.1 px)
    assert all(np.allclose(a, b, atol=0.2) for a, b in zip(rects, first_rects))
    again, before = decode_frames(tmp_path / "again.mp4"), decode_frames(d / "first.mp4")
    assert len(again) == len(before)
    assert max(float(np.abs(a.astype(np.int16) - b).mean()) for a, b in zip(again, before)) < 1.0


def test_a_person_kept_visible_and_a_region_added(first, tmp_path):
    clip, d, data = first
    keep = _track_of(data, clip.boxes[10][0])
    data["tracks"] = [{**t, "action": "keep" if t["id"] == keep else "redact"} for t in data["tracks"]]
    f0, b0, f1, b1 = ADDED
    data["added"] = [{"keys": [{"frame": f0, "box": b0}, {"frame": f1, "box": b1}]}]
    (tmp_path / "dec.json").write_text(json.dumps(data))
    report = trt_anon.process(clip.path, tmp_path / "out.mp4", decisions_path=str(tmp_path / "dec.json"),
                              json_path=str(tmp_path / "out.json"))
    src, out, before = decode_frames(clip.path), decode_frames(tmp_path / "out.mp4"), decode_frames(d / "first.mp4")
    assert len(out) == len(src) == report.frames
    for i, (s, o, b) in enumerate(zip(src, out, before)):
        kept, other = clip.boxes[i][0], clip.boxes[i][1]
        assert _diff(o, s, kept) < 4, i                        # the kept face: the input, up to encoding
        assert _diff(o, s, other) > 10 and _diff(o, b, other) < 4, i  # the other: redacted as before
        a = (i - f0) / (f1 - f0)
        region = [(1 - a) * u + a * v for u, v in zip(b0, b1)]
        if f0 <= i <= f1:
            assert _diff(o, s, region) > 5, i                  # the added region: redacted
        else:
            assert _diff(o, s, b0) < 4, i                      # outside its span: untouched
    saved = json.loads((tmp_path / "out.json").read_text())
    assert {t["id"]: t["action"] for t in saved["tracks"]}[keep] == "keep"
    assert saved["audit"]["decisions"]["kept"] == [keep] and saved["audit"]["decisions"]["added"] == 1


@pytest.mark.parametrize("edit, words", [
    ("other input", "another input"),
    ("unknown track", "on no frame"),
    ("bad action", "redact, keep or matched"),
    ("fewer frames", "frames"),
    ("bad region", "added region"),
    ("no audit", "not a decisions file"),
    ("eyes only", "whole faces"),
])
def test_decisions_that_do_not_fit_are_refused_in_one_line(first, clips, tmp_path, capsys, edit, words):
    clip, _, data = first
    data = json.loads(json.dumps(data))
    src = clip.path
    if edit == "other input":
        src = clips["moving"].path
    elif edit == "unknown track":
        data["tracks"].append({"id": 999, "action": "keep"})
    elif edit == "bad action":
        data["tracks"][0]["action"] = "blur"
    elif edit == "fewer frames":
        data["frames"] = data["frames"][:-1]
    elif edit == "bad region":
        data["added"] = [{"keys": [{"frame": 0, "box": [50, 50, 10, 10]}]}]
    elif edit == "no audit":
        del data["audit"]
    args = ["--target", "eyes"] if edit == "eyes only" else []
    (tmp_path / "dec.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    out.mkdir()
    code = main([str(src), "--decisions", str(tmp_path / "dec.json"), "-o", str(out / "x.mp4"), "-q", *args])
    assert code == (1 if edit == "fewer frames" else 2)   # a file that cannot work here: an option's error (2)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []
