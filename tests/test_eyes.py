"""Eyes mode with overlapping faces: a face partly behind another keeps its eye band."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import decode_frames
from synth import Face, cover_mask, face_box, face_points, make_clip, render

import trt_anon
from trt_anon.detect.detections import iou, nms
from trt_anon.redact import cell_sizes, pixel_mask

# A 110 px head (Hopper) drawn over the lower face of a 155 px one (the astronaut) and staying there:
# face boxes at IoU 0.30-0.33, one of the astronaut's eyes still in view. 720p, as reported.
START, N = 56, 34  # frames 56-89 of scripts/eval.py's overlap_720p
FACES = [Face(155, (560, 215), oval=True), Face(110, (440 + 2.0 * START, 320), (2.0, 0.0), source="hopper", oval=True)]
W, H = 1280, 720


@pytest.fixture(scope="module")
def overlap(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("eyes") / "overlap.mp4", W, H, frames=N, audio=0, faces=FACES, crf=18)


def eyes_in_view(i: int) -> list[tuple[slice, slice]]:
    """The astronaut's eye regions in frame ``i`` that are at least half out from under Hopper."""
    pts = face_points(FACES[0], i)
    d = float(np.linalg.norm(pts[0] - pts[1]))
    out = []
    for eye in pts[:2]:
        x1, y1 = (eye - (0.25 * d, 0.18 * d)).astype(int)
        x2, y2 = (eye + (0.25 * d, 0.18 * d)).astype(int)
        region = (slice(y1, y2), slice(x1, x2))
        if (~cover_mask(FACES[1], i, W, H)[region]).mean() >= 0.5:
            out.append(region)
    return out


def test_the_overlap_is_the_reported_one():
    boxes = [np.array([face_box(f, i) for f in FACES], np.float32) for i in range(N)]
    overlaps = [iou(b[:1], b[1:])[0, 0] for b in boxes]
    assert min(overlaps) > 0.28 and max(overlaps) > 0.32
    assert sum(bool(eyes_in_view(i)) for i in range(N)) >= 10


def test_nms_keeps_an_overlapping_face_with_its_own_eyes():
    boxes = np.array([[560, 215, 715, 424], [568, 320, 678, 442], [562, 217, 713, 420]], np.float32)
    eyes = np.zeros((3, 5, 2), np.float32)
    eyes[0, :2] = eyes[2, :2] = [(604, 293), (677, 298)]   # the same face twice (neighbouring heatmap cells)
    eyes[1, :2] = [(597, 360), (645, 356)]                 # another face, lower, behind or in front
    score = np.array([0.9, 0.33, 0.8], np.float32)
    assert iou(boxes[:1], boxes[1:2])[0, 0] > 0.3
    assert list(nms(boxes, score, 0.3)) == [0]                 # IoU alone: the second face is lost
    assert list(nms(boxes, score, 0.3, eyes)) == [0, 1]        # eyes tell them apart; the duplicate goes


def test_eyes_of_a_face_partly_behind_another_stay_covered(overlap, tmp_path):
    out, js = tmp_path / "eyes.mp4", tmp_path / "eyes.json"
    trt_anon.process(overlap.path, out, target="eyes", json_path=js)
    frames = json.loads(js.read_text())["frames"]
    rendered = [f for f, _, _ in render(W, H, FACES, N)]
    decoded = decode_frames(out)
    checked = 0
    for i, rec in enumerate(frames):
        boxes = np.array(rec["redacted"], np.float32).reshape(-1, 4)
        mask = pixel_mask(boxes, cell_sizes(boxes, 25), H, W)
        for region in eyes_in_view(i):
            checked += 1
            visible = ~cover_mask(FACES[1], i, W, H)[region]
            assert mask[region][visible].all(), f"frame {i}: an eye of the face behind is not covered"
            diff = np.abs(decoded[i][region].astype(np.int16) - rendered[i][region]).mean()
            assert diff > 8, f"frame {i}: an eye of the face behind is written as it was"
    assert checked >= 10
