"""The review page: choice of frames, the page's contents, privacy, fail-closed writing, and a real browser."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import decode_frames
from synth import Face, make_clip, render, rotate_box

import trt_anon
import trt_anon.api
import trt_anon.review
from trt_anon.detect.detections import FILLED, HELD, HIT, Regions
from trt_anon.errors import ConfigError, OutputError
from trt_anon.review import MAX_THUMBS, PICKS, FrameStats, choose_frames
from trt_anon.review.frames import read_frames
from trt_anon.review.page import CHART_BINS, KIND_COLOURS, _binned, chart_png

CHROMIUM = Path("/usr/bin/chromium")


def needs_chromium(test):
    """A test in headless Chromium: skipped without it; CI's browser pass runs every one (``-m chromium``)."""
    skip = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)")
    return pytest.mark.chromium(skip(test))


# --- helpers ---------------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """What a test needs from a page: images (attributes), text by element id, <li> texts of #warnings, body attrs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.text: dict[str, str] = {}
        self.warnings: list[str] = []
        self.body: dict = {}
        self.figures: list[dict] = []
        self._ids: list[tuple[str, str]] = []   # (tag, id) open elements that have an id
        self._li: list[str] | None = None
        self._in_warnings = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
            if self.figures and "frame" in self.figures[-1] and a.get("class") in ("input", "output"):
                self.figures[-1][a["class"]] = a
        if tag == "body":
            self.body = a
        if tag == "figure":
            self.figures.append({"frame": int(a["data-frame"])})
        if "id" in a and tag != "img":
            self._ids.append((tag, a["id"]))
            self.text[a["id"]] = ""
            self._in_warnings |= a["id"] == "warnings"
        if tag == "li" and self._in_warnings:
            self._li = []

    def handle_endtag(self, tag):
        if tag == "li" and self._li is not None:
            self.warnings.append("".join(self._li))
            self._li = None
        if self._ids and self._ids[-1][0] == tag:
            if self._ids[-1][1] == "warnings":
                self._in_warnings = False
            self._ids.pop()

    def handle_data(self, data):
        for _, ident in self._ids:
            self.text[ident] += data
        if self._li is not None:
            self._li.append(data)


def image(src: str) -> np.ndarray:
    """A data URI's picture as RGB."""
    head, b64 = src.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64"), head
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def face_diff(a: np.ndarray, b: np.ndarray, box) -> float:
    """Median absolute difference inside a face box (robust to the outlines drawn across it)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.median(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2].astype(np.int16))))


def outline(img: np.ndarray) -> np.ndarray:
    """Where a thumbnail has one of the outline colours."""
    return np.any([np.abs(img.astype(np.int16) - c).max(axis=2) < 40 for c in KIND_COLOURS.values()], axis=0)


def det(boxes, kinds, scores=None) -> Regions:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(boxes)
    return Regions(boxes, np.asarray(scores if scores is not None else [0.9] * n, np.float32),
                   np.asarray(kinds, np.uint8), np.arange(n, dtype=np.int32), boxes)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """320x180, 45 frames: one face entering at 3 and leaving at 40, another entering at 10 (real faces)."""
    d = tmp_path_factory.mktemp("review")
    return make_clip(d / "two faces.mp4", 320, 180, frames=45, faces=[
        Face(50, (20, 40), (2.0, 0.0), enter=3, leave=40), Face(40, (230, 60), (-1.0, 0.5), flip=True, enter=10)])


@pytest.fixture(scope="module")
def reviewed(clip):
    """The clip anonymized with the default review page."""
    report = trt_anon.process(clip.path, clip.path.with_name("out.mp4"), review=True)
    return report, Page(Path(report.review).read_text(encoding="utf-8"))


# --- choice of frames ------------------------------------------------------------------------------------------

def test_frame_stats_counts_kinds_scores_and_tracks():
    s = FrameStats()
    s.add(0, Regions.empty(), np.zeros((0, 4)))
    s.add(1, det([[10, 10, 30, 30]], [FILLED]), np.array([[5, 5, 35, 35]]))
    s.add(2, det([[10, 10, 30, 30], [100, 100, 160, 150]], [HIT, HIT], [0.4, 0.7]),
          np.array([[5, 5, 35, 35], [90, 90, 170, 160]]))
    s.add(3, det([[100, 100, 160, 150]], [HELD]), np.array([[90, 90, 170, 160]]))
    s.add(4, Regions.empty(), np.zeros((0, 4)))
    a = s.arrays()
    assert a["hit"].tolist() == [0, 0, 2, 0, 0] and a["held"].tolist() == [0, 0, 0, 1, 0]
    assert a["filled"].tolist() == [0, 1, 0, 0, 0]
    assert np.isnan(a["low"][[0, 1, 3, 4]]).all() and a["low"][2] == pytest.approx(0.4)  # hits only
    assert a["largest"].tolist() == [0, 30, 80, 80, 0]
    assert list(s.starts) == [1, 2] and list(s.ends) == [2, 3]
    s.add(5, det([[0, 0, 40, 40], [20, 0, 60, 40]], [HIT, HIT]), np.array([[0, 0, 40, 40], [20, 0, 60, 40]]))
    s.add(6, det([[0, 0, 40, 40]], [HIT]), np.array([[0, 0, 40, 40]]))   # one of two overlapping boxes ends
    assert list(s.starts) == [1, 2, 5] and list(s.ends) == [2, 3, 5]
    boxes, kinds = s.frame_boxes(2)
    assert boxes.tolist() == [[5, 5, 35, 35], [90, 90, 170, 160]] and kinds.tolist() == [HIT, HIT]


def test_choose_frames_covers_every_reason_and_keeps_them_apart():
    s = FrameStats()
    for f in range(1000):
        faces = []                                           # (box, kind, score)
        if 100 <= f < 300:                                   # one track
            faces.append(([f, 50, f + 40, 90], HIT, 0.4 if f == 150 else 0.9))
        if 500 <= f < 520:                                   # another
            faces.append(([400, 50, 440, 90], HIT if f < 515 else HELD, 0.8))
        if f == 700:                                         # a crowd for one frame
            faces += [([i * 50, 200, i * 50 + 30, 230], HIT, 0.85) for i in range(5)]
        if f == 800:                                         # a close-up
            faces.append(([0, 0, 300, 300], HIT, 0.95))
        d = det(*zip(*faces)) if faces else Regions.empty()
        s.add(f, d, d.xyxy)
    picks = choose_frames(s)
    frames = [p.frame for p in picks]
    why = {p.frame: "; ".join(p.reasons) for p in picks}
    assert frames == sorted(set(frames)) and len(picks) <= MAX_THUMBS
    assert 0 in frames and 999 in frames and sum("evenly" in w for w in why.values()) == PICKS["even"]
    assert {100, 500, 700, 800} <= {f for f, w in why.items() if "appears" in w}
    assert {299, 519, 700, 800} <= {f for f, w in why.items() if "ends" in w}
    assert "low score 0.40" in why[150]                       # the lowest-scoring detection
    low = sorted(f for f, w in why.items() if "low score" in w)
    assert len(low) == PICKS["low"] and min(np.diff(low)) >= 5   # 1000 // 200: not six neighbours
    assert "most faces (5)" in why[700] and "largest redacted box (300 px: face and margin)" in why[800]


def test_choose_frames_short_and_empty():
    assert choose_frames(FrameStats()) == []
    s = FrameStats()
    s.add(0, Regions.empty(), np.zeros((0, 4)))
    assert [(p.frame, p.reasons, p.keys) for p in choose_frames(s)] == [(0, ["evenly spaced"], ["even"])]


def test_long_timeline_keeps_every_spike():
    """Past CHART_BINS frames the chart is drawn per bin: a one-frame crowd and a one-frame low score stay."""
    n = 10 * CHART_BINS + 7
    s = {"hit": np.ones(n, np.int32), "held": np.zeros(n, np.int32), "filled": np.zeros(n, np.int32),
         "low": np.full(n, 0.8, np.float32), "largest": np.zeros(n, np.float32)}
    s["hit"][12345], s["held"][12345], s["low"][777] = 6, 2, 0.21
    x, b = _binned(s, CHART_BINS)
    assert len(x) == CHART_BINS and b["hit"].max() == 6 and b["held"].max() == 2
    assert np.nanmin(b["low"]) == pytest.approx(0.21)
    png = cv2.imdecode(np.frombuffer(chart_png(s, [0, 12345], 0.2, 30.0), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape == (420, 1200, 3)


# --- decoding only the chosen frames ---------------------------------------------------------------------------

def test_read_frames_finds_exact_frames_across_keyframes(tmp_path):
    """Seeking lands on the right frame: a GOP of 8 and B-frames, frames asked for out of order and in a GOP."""
    path = tmp_path / "gop.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"g": "8", "bf": "2", "crf": "12"})
        vs.width, vs.height, vs.pix_fmt = 160, 96, "yuv420p"
        for frame, _, _ in render(160, 96, [Face(40, (10, 10), (3, 1))], 50):
            out.mux(vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(vs.encode(None))
    every = decode_frames(path)
    want = [33, 0, 7, 8, 9, 49, 20, 21, 48]
    got = {i: f.to_ndarray(format="rgb24") for i, f in read_frames(path, by_index=want)}
    assert sorted(got) == sorted(want)
    for i in want:
        assert np.array_equal(got[i], every[i]), i
    with av.open(str(path)) as c:
        pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    by_pts = dict(read_frames(path, by_pts=[pts[41], pts[3]]))
    assert np.array_equal(by_pts[pts[41]].to_ndarray(format="rgb24"), every[41])


def test_read_frames_decodes_only_near_the_chosen_frames(tmp_path, monkeypatch):
    """Three frames of 240 with a keyframe every 8: a few GOPs decoded, never the whole video."""
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"g": "8", "preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        for i in range(240):
            out.mux(vs.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i, np.uint8), format="rgb24")))
        out.mux(vs.encode(None))
    decoded = []
    real = trt_anon.review.frames._decode

    def counting(container, stream):
        for frame in real(container, stream):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(trt_anon.review.frames, "_decode", counting)
    got = {i: f.to_ndarray(format="rgb24")[0, 0, 0] for i, f in read_frames(path, by_index=[5, 120, 239])}
    assert {i: abs(int(v) - i) <= 2 for i, v in got.items()} == {5: True, 120: True, 239: True}
    assert len(decoded) <= 3 * 8 + 8, len(decoded)


# --- the page --------------------------------------------------------------------------------------------------

def test_page_shows_report_chart_and_output_thumbnails(clip, reviewed):
    report, page = reviewed
    assert report.review == str(clip.path.with_name("out.review.html"))
    assert page.text["frames"] == str(report.frames) == "45"
    assert page.text["warning-count"] == "0" and page.text["warnings"].strip() == "None."
    assert "onnxruntime" in page.text["backends"] and "threshold 0.2" in page.text["settings"]
    chart = [i for i in page.images if i.get("id") == "chart"]
    assert len(chart) == 1 and image(chart[0]["src"]).shape[1] == 1200
    frames = [f["frame"] for f in page.figures]
    assert frames == sorted(set(frames)) and frames[0] == 0 and frames[-1] == 44
    assert page.text["thumb-count"] == str(len(frames)) and 16 <= len(frames) <= MAX_THUMBS
    assert all(set(f) == {"frame", "output"} for f in page.figures)   # no input pictures by default
    assert all(image(f["output"]["src"]).shape == (180, 320, 3) for f in page.figures)
    assert "originals-warning" not in page.text and page.body["data-originals"] == "false"
    assert "16 of up to 16 evenly spaced" in page.text["choice"]
    assert "holds no pixel of the input" in page.text["privacy"]


def test_default_page_holds_no_unredacted_face(clip, reviewed):
    """Inside every real face, each thumbnail matches the written output (mosaic), not the input."""
    report, page = reviewed
    src, out = decode_frames(clip.path), decode_frames(Path(report.output))
    checked = 0
    for fig in page.figures:
        f, thumb = fig["frame"], image(fig["output"]["src"])
        for box in clip.boxes[f]:
            if box[2] - box[0] < 20:
                continue
            assert face_diff(thumb, out[f], box) <= 4, (f, box)           # what will be published
            assert face_diff(thumb, src[f], box) >= 15, (f, box)          # not the face
            checked += 1
    assert checked >= 20


def test_originals_page_says_so_and_shows_the_input(clip, tmp_path):
    report = trt_anon.process(clip.path, tmp_path / "o.mp4", review=tmp_path, review_originals=True)
    assert report.review == str(tmp_path / "o.review.html")
    text = Path(report.review).read_text(encoding="utf-8")
    page = Page(text)
    assert text.index('id="originals-warning"') < text.index("<main>")   # first thing on the page
    assert "UNREDACTED" in page.text["originals-warning"] and page.body["data-originals"] == "true"
    src = decode_frames(clip.path)
    pairs = [f for f in page.figures if clip.boxes[f["frame"]]]
    assert pairs and all("input" in f and "output" in f for f in page.figures)
    for fig in pairs:
        f = fig["frame"]
        box = max(clip.boxes[f], key=lambda b: b[2] - b[0])
        assert face_diff(image(fig["input"]["src"]), src[f], box) <= 6      # the input, as promised
        assert face_diff(image(fig["output"]["src"]), src[f], box) >= 15


def test_portrait_video_thumbnails_are_upright_with_boxes_on_the_faces(tmp_path):
    """A phone's portrait video (stored turned, display matrix 90): thumbnails as a player shows them, the
    outlines drawn around the faces there, and the faces mosaicked."""
    clip = make_clip(tmp_path / "portrait.mp4", 180, 320, frames=20, rotation=90, audio=0,
                     faces=[Face(60, (40, 100), (1.0, 2.0))])
    report = trt_anon.process(clip.path, review=True)
    page = Page(Path(report.review).read_text(encoding="utf-8"))
    assert page.figures
    src = decode_frames(clip.path)   # stored (turned) frames
    for fig in page.figures:
        f, thumb = fig["frame"], image(fig["output"]["src"])
        assert thumb.shape == (320, 180, 3)                                # upright, as displayed
        shown = np.ascontiguousarray(np.rot90(src[f], 1))
        for box in clip.boxes[f]:
            box = rotate_box(box, 1, 320, 180)                             # stored -> displayed coordinates
            assert face_diff(thumb, shown, box) >= 15                      # mosaicked where the face is shown
            ys, xs = np.nonzero(outline(thumb))                            # drawn around the face, close to it
            assert box[0] - 40 < xs.min() < box[0] and box[2] < xs.max() < box[2] + 40, (f, box)
            assert box[1] - 40 < ys.min() < box[1] and box[3] < ys.max() < box[3] + 40, (f, box)


def test_still_image_review(tmp_path):
    frame, boxes, _ = next(render(320, 240, [Face(80, (100, 60))], 1))
    cv2.imwrite(str(tmp_path / "photo.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    report = trt_anon.process(tmp_path / "photo.png", review=True)
    page = Page(Path(report.review).read_text(encoding="utf-8"))
    assert report.review == str(tmp_path / "photo.anon.review.html") and page.text["frames"] == "1"
    assert [f["frame"] for f in page.figures] == [0]
    assert face_diff(image(page.figures[0]["output"]["src"]), frame, boxes[0]) >= 15


def test_phone_photo_review_is_upright(tmp_path):
    """A HEIC stored sideways (irot, as phones write it) and a JPEG with EXIF orientation 6: the page shows
    them as a viewer does, with the face covered."""
    from PIL import Image
    from skimage import data
    from synth import FACE
    from test_images import STORE, phone_exif

    from trt_anon.media.stills import heif_support
    heif_support()
    display = np.ascontiguousarray(data.astronaut()[:, :400])
    for name in ("IMG_0001.HEIC", "IMG_0002.jpg"):
        Image.fromarray(display).transpose(STORE[6]).save(tmp_path / name, exif=phone_exif(6).tobytes(), quality=90)
        report = trt_anon.process(tmp_path / name, review=True, review_originals=True)
        fig = Page(Path(report.review).read_text(encoding="utf-8")).figures[0]
        before, after = image(fig["input"]["src"]), image(fig["output"]["src"])
        assert before.shape == after.shape == (512, 400, 3), name
        assert np.abs(before.astype(int) - display).mean() < 12, f"{name}: input thumbnail not upright"
        assert face_diff(after, before, FACE) >= 15, f"{name}: face not covered on the page"


def test_review_needs_matplotlib_one_line_error(clip, tmp_path, monkeypatch):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from trt_anon.cli import main\n"
            f"sys.exit(main([{str(clip.path)!r}, '-o', {str(tmp_path / 'x.mp4')!r}, '--review', '-q']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "trt-anon: error: --review needs matplotlib, which is not installed: pip install 'trt_anon[review]'"]
    assert list(tmp_path.iterdir()) == []   # refused before any work
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'trt_anon\[review\]'"):
        trt_anon.process(clip.path, tmp_path / "y.mp4", review=True)
    assert list(tmp_path.iterdir()) == []


def test_review_failure_is_a_warning_and_leaves_no_page(clip, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    real_write = Path.write_text

    def half_then_full(self, text, *args, **kwargs):   # the disk fills up half-way through the page
        real_write(self, text[:len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    report = trt_anon.process(clip.path, tmp_path / "a.mp4", review=True)
    assert report.review is None and "review page not written" in report.warnings[-1]
    assert "No space left" in report.warnings[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]      # the video, no page, no temporary file
    monkeypatch.setattr(trt_anon.review, "chart_png", broken)
    report = trt_anon.process(clip.path, tmp_path / "b.mp4", review=True)
    assert report.review is None and sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_cli_failed_page_warns_even_when_quiet_and_exits_0(clip, tmp_path):
    code = ("import sys, trt_anon.review\n"
            "def full(*a, **k): raise OSError(28, 'No space left on device')\n"
            "trt_anon.review.chart_png = full\n"
            "from trt_anon.cli import main\n"
            f"sys.exit(main([{str(clip.path)!r}, '-o', {str(tmp_path / 'x.mp4')!r}, '--review', '-q']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr                           # the video is complete
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"trt-anon: warning: {clip.path.name}: review page not written"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


def test_review_refusals_before_any_work(clip, tmp_path):
    (tmp_path / "a.review.html").write_text("mine")
    with pytest.raises(OutputError, match="exists"):
        trt_anon.process(clip.path, tmp_path / "a.mp4", review=True)
    with pytest.raises(OutputError, match="name an .html file or a folder"):
        trt_anon.process(clip.path, tmp_path / "b.mp4", review=tmp_path / "b.mp4")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(OutputError, match="review page folder .*notes.txt/pages: cannot create it"):
        trt_anon.process(clip.path, tmp_path / "c.mp4", review=f"{tmp_path / 'notes.txt' / 'pages'}/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.review.html", "notes.txt"]
    assert (tmp_path / "a.review.html").read_text() == "mine"


def test_cli_review_of_a_folder_writes_pages_and_index(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip.path.read_bytes())
    make_clip(folder / "b.mp4", 160, 96, frames=12, audio=0, faces=[Face(40, (30, 20))])
    (folder / "c.mp4").write_bytes(b"not a video")
    r = subprocess.run([sys.executable, "-m", "trt_anon", folder, "-o", tmp_path / "out", "--review",
                        tmp_path / "pages", "--json", tmp_path / "js", "-q"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and "c.mp4" in r.stderr   # one bad file: exit 1, the others done
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == ["a.anon.review.html", "b.anon.review.html",
                                                                       "index.html"]
    index = (tmp_path / "pages" / "index.html").read_text(encoding="utf-8")
    page = Page(index)
    assert page.text["total-frames"] == "57"
    faces = sum(json.loads((tmp_path / "js" / f"{n}.anon.json").read_text())["report"]["faces"] for n in "ab")
    assert page.text["total-faces"] == str(faces)
    assert re.findall(r'href="([^"]+)"', index) == ["a.anon.review.html", "b.anon.review.html"]
    assert "failed:" in page.text["files"] and "c.mp4" in page.text["files"]


def test_cli_review_paths(clip, tmp_path):
    """`--review IN.mp4` (argparse would take the input for PATH), an .html path, and a new folder."""
    r = subprocess.run([sys.executable, "-m", "trt_anon", "--review", clip.path, "-o", tmp_path / "a.mp4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"review: {tmp_path / 'a.review.html'}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "trt_anon", clip.path, "-o", tmp_path / "b.mp4", "-q",
                        "--review", tmp_path / "my page.html"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = trt_anon.process(clip.path, tmp_path / "c.mp4", review=tmp_path / "pages")
    assert report.review == str(tmp_path / "pages" / "c.review.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.review.html", "b.mp4", "c.mp4",
                                                           "my page.html", "pages"]


# --- in a real browser -----------------------------------------------------------------------------------------

def chromium(*args: str) -> str:
    """Run headless Chromium in a fresh profile, without network services; return its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", f"--user-data-dir={profile}", *args],
                           capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@needs_chromium
def test_page_loads_in_chromium_with_every_image(clip, tmp_path, monkeypatch):
    """Every image and the chart load (non-zero natural size, measured by the browser after load), and the
    frame count and warnings the browser shows are the report's (a warning with markup stays text)."""
    real = trt_anon.api._write_review
    odd = 'a <b>bold</b> & "quoted" <script>document.title="x"</script> warning'

    def with_warning(report, *args):
        report.warnings.append(odd)
        real(report, *args)

    monkeypatch.setattr(trt_anon.api, "_write_review", with_warning)
    report = trt_anon.process(clip.path, tmp_path / "w.mp4", review=True, review_originals=True)
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", Path(report.review).as_uri())
    page = Page(dom)
    n = len(page.images)
    crops = [i for i in page.images if i.get("class") in ("crop input", "crop output")]
    assert n == 1 + 2 * len(page.figures) + len(crops) and n > 30 and len(crops) >= 6   # 3 tracks, 2 rows
    assert page.body.get("data-images-loaded") == f"{n}/{n}", page.body
    assert page.body.get("data-editor") == "ready"    # the embedded run unpacked, the editor drawn
    for img in page.images:
        w, h = map(int, img["data-natural"].split("x"))
        assert w > 0 and h > 0, img.get("alt")
    chart = next(i for i in page.images if i.get("id") == "chart")
    assert chart["data-natural"] == "1200x420"
    assert page.text["frames"] == str(report.frames)
    assert page.warnings == report.warnings and page.warnings[-1] == odd
    assert "<title>Review: w.mp4</title>" in dom   # the warning's script did not run


@needs_chromium
def test_index_links_open_in_chromium(clip, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.mp4", "y.mp4"):
        (folder / name).write_bytes(clip.path.read_bytes())
    r = subprocess.run([sys.executable, "-m", "trt_anon", folder, "--review", "-q"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    index = folder / "index.html"
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", index.as_uri())
    links = re.findall(r'href="([^"]+)"', dom)
    assert links == ["x.anon.review.html", "y.anon.review.html"]
    for link in links:
        page = Page(chromium("--virtual-time-budget=10000", "--dump-dom", (folder / link).as_uri()))
        n = len(page.images)
        assert n > 1 and page.body.get("data-images-loaded") == f"{n}/{n}"
        assert page.body.get("data-editor") == "ready"   # each file's page is its editor
        assert page.text["frames"] == "45"


@needs_chromium
def test_screenshot_is_not_blank(clip, reviewed, tmp_path):
    """A rendered page has the chart and the thumbnails on it, not a white sheet (also a file to look at)."""
    report, _ = reviewed
    shot = tmp_path / "page.png"
    chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", Path(report.review).as_uri())
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (2000, 1280)
    assert (img.std(axis=2) > 40).mean() > 0.05   # colourful: chart areas and photos, not just text
    if os.environ.get("TRT_ANON_KEEP_SHOT"):
        Path(os.environ["TRT_ANON_KEEP_SHOT"]).write_bytes(shot.read_bytes())
