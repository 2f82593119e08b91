"""The review page as an editor: the run's document embedded in the page (the decisions file --json would be),
one card per track, and, in a real browser, a person kept visible and regions drawn, saved and rendered again."""
from __future__ import annotations

import base64
import gzip
import html
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import decode_frames
from synth import Face, make_clip, rotate_box
from test_review import CHROMIUM, Page, needs_chromium

import trt_anon
from trt_anon.decisions import Decisions
from trt_anon.review import people
from trt_anon.review.editor import CROP_HEIGHT, crop

# what tests/test_review.py's chromium() passes; playwright adds --headless and its own fresh profile
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def embedded(page: str) -> dict:
    """The run's document the page carries (gzip, base64)."""
    b64 = re.search(r'<script type="application/octet-stream" id="document">([^<]*)</script>', page).group(1)
    return json.loads(gzip.decompress(base64.b64decode(b64)))


def mean_diff(a: np.ndarray, b: np.ndarray, box) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.abs(a[y1:y2, x1:x2].astype(np.int16) - b[y1:y2, x1:x2]).mean())


def face_of(data: dict, frame: int, box) -> dict:
    """The first run's face in ``frame`` nearest the ground-truth ``box``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(data["frames"][frame]["faces"],
               key=lambda f: abs((f["box"][0] + f["box"][2]) / 2 - cx) + abs((f["box"][1] + f["box"][3]) / 2 - cy))


@pytest.fixture(scope="module")
def first(clips, tmp_path_factory):
    """Two real faces, anonymized with a review page and --json."""
    d = tmp_path_factory.mktemp("editor")
    clip = clips["two"]
    with pytest.MonkeyPatch.context() as mp:  # a card per track (its two faces are one person, mirrored)
        mp.setattr(people, "embedder", lambda: None)
        report = trt_anon.process(clip.path, d / "first.mp4", review=True, json_path=str(d / "first.json"))
    page = Path(report.review).read_text(encoding="utf-8")
    return clip, d, report, page, json.loads((d / "first.json").read_text())


# --- the page's document and cards -----------------------------------------------------------------------------

def test_embedded_document_is_the_runs_decisions_file(first, tmp_path):
    """Without edits the page's document is the --json file without what --decisions does not read (timestamps,
    redacted rectangles), and loads as the same decisions."""
    clip, d, _, page, data = first
    doc = embedded(page)
    assert [f["frame"] for f in doc["frames"]] == list(range(len(data["frames"]))) == list(range(33))
    assert [f["faces"] for f in doc["frames"]] == [f["faces"] for f in data["frames"]]
    assert all(set(f) == {"frame", "faces"} for f in doc["frames"])
    assert doc["tracks"] == data["tracks"] and doc["audit"] == data["audit"] and doc["report"] == data["report"]
    assert "added" not in doc and len(doc["tracks"]) >= 2
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    a, b = Decisions.load(tmp_path / "doc.json", clip.path), Decisions.load(d / "first.json", clip.path)
    assert (a.frames, a.keep, a.added, a.options) == (b.frames, b.keep, b.added, b.options)


def test_document_without_json_and_its_size(first, tmp_path):
    """--review alone embeds the same document (its own audit record, hashing the same files), gzip-compressed
    to a fraction of the JSON."""
    clip, _, _, page, data = first
    report = trt_anon.process(clip.path, tmp_path / "alone.mp4", review=True)
    text = Path(report.review).read_text(encoding="utf-8")
    doc = embedded(text)
    assert [f["faces"] for f in doc["frames"]] == [f["faces"] for f in data["frames"]]
    assert doc["audit"]["input"]["sha256"] == data["audit"]["input"]["sha256"]
    assert doc["audit"]["output"]["sha256"] == data["audit"]["output"]["sha256"]   # the same output, again
    b64 = re.search(r'id="document">([^<]*)<', text).group(1)
    assert len(b64) < len(json.dumps(doc)) / 2


def test_one_card_per_track_with_its_faces(first):
    """Each track has a card: span, frames, lowest score, a redact/keep switch (redact), and crops of its first,
    largest and last face from the output (mosaicked there)."""
    clip, d, report, page, data = first
    cards = re.findall(r'<div class="track" id="track-(\d+)" data-track="\d+" data-action="(\w+)">(.*?)</div></div>',
                       page, re.S)
    assert [int(c[0]) for c in cards] == [t["id"] for t in data["tracks"]]
    assert all(c[1] == "redact" for c in cards)
    out, src = decode_frames(d / "first.mp4"), decode_frames(clip.path)
    for (ident, _, body), t in zip(cards, data["tracks"]):
        assert f"frames {t['first']}–{t['last']} ({t['frames']} frames)" in body
        assert f"detected face up to {t['largest']:.0f} px wide" in body   # the detector's box, not the margin's
        assert f"lowest score {t['lowest_score']:.2f}" in body and 'data-act="keep"' in body
        shots = re.findall(r'alt="track \d+ at frame (\d+) \(([\w, ]+)\)" src="([^"]+)"', body)
        frames = [int(s[0]) for s in shots]
        assert frames[0] == t["first"] and frames[-1] == t["last"] and frames == sorted(set(frames))
        assert sorted(", ".join(s[1] for s in shots).split(", ")) == ["first", "largest", "last"]
        for frame, _, src_uri in shots:
            got = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(src_uri.split(",", 1)[1]), np.uint8),
                                            cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.int16)
            face = next(f for f in data["frames"][int(frame)]["faces"] if f["track"] == int(ident))["box"]
            want = [cv2.resize(cv2.imdecode(np.frombuffer(crop(v[int(frame)], 0, face), np.uint8), cv2.IMREAD_COLOR),
                               got.shape[1::-1]) for v in (out, src)]   # the JSON's boxes are rounded: +-1 px
            assert got.shape[0] == CROP_HEIGHT and abs(got.shape[1] - CROP_HEIGHT) <= 2   # square but at a border
            published, face_itself = (float(np.abs(got - cv2.cvtColor(w, cv2.COLOR_BGR2RGB)).mean()) for w in want)
            assert published < 3 < 8 < face_itself, (ident, frame, published, face_itself)
    assert 'data-frames="33"' in page and 'data-width="640" data-height="360" data-turns="0"' in page


def test_a_decisions_run_carries_its_decisions_forward(first, tmp_path):
    """Rendered with decisions, the new --json and the new page hold the kept tracks and the added regions, so
    that they render the same again (a second round of review starts where the first ended)."""
    clip, d, _, _, data = first
    keep = data["tracks"][0]["id"]
    data = {**data, "tracks": [{**t, "action": "keep" if t["id"] == keep else "redact"} for t in data["tracks"]],
            "added": [{"keys": [{"frame": 3, "box": [40.0, 260.0, 140.0, 340.0]},
                                {"frame": 9, "box": [60.0, 260.0, 160.0, 340.0]}]}]}
    (tmp_path / "dec.json").write_text(json.dumps(data))
    report = trt_anon.process(clip.path, tmp_path / "a.mp4", decisions_path=str(tmp_path / "dec.json"),
                              json_path=str(tmp_path / "a.json"), review=True)
    again = json.loads((tmp_path / "a.json").read_text())
    doc = embedded(Path(report.review).read_text(encoding="utf-8"))
    for got in (again, doc):
        assert got["added"] == data["added"]
        assert [t["action"] for t in got["tracks"]] == [t["action"] for t in data["tracks"]]
    text = Path(report.review).read_text()
    assert f'id="track-{keep}" data-track="{keep}" data-action="keep"' in text
    # nothing was detected: no threshold of this run on the page, the faces' source instead
    settings = re.search(r'id="settings">([^<]*)<', text).group(1)
    assert "threshold" not in settings and "faces from dec.json (nothing detected)" in settings, settings
    assert "threshold" not in re.search(r'<h2>Report</h2>.*?</table>', text, re.S).group(0)
    trt_anon.process(clip.path, tmp_path / "b.mp4", decisions_path=str(tmp_path / "a.json"))
    a, b = decode_frames(tmp_path / "a.mp4"), decode_frames(tmp_path / "b.mp4")
    assert max(float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(a, b)) < 1.0


# --- in a real browser -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by playwright (the system's browser: playwright downloads none)."""
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs playwright (pip install playwright; it drives /usr/bin/chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield b
        b.close()


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-editor=ready]", timeout=15000)
    return page, errors


def draw(page, frame: int, box, width: int, height: int, turns: int = 0) -> None:
    """Drag a box (stored-frame pixels) on frame ``frame``'s output thumbnail, as a user would."""
    pad = page.locator(f'.draw[data-frame="{frame}"]').last
    pad.evaluate("e => e.scrollIntoView({block: 'center'})")   # clear of the save bar at the bottom
    shown_w, shown_h = (height, width) if turns % 2 else (width, height)
    x1, y1, x2, y2 = rotate_box(box, turns, width, height)
    r = pad.bounding_box()
    page.mouse.move(r["x"] + x1 / shown_w * r["width"], r["y"] + y1 / shown_h * r["height"])
    page.mouse.down()
    page.mouse.move(r["x"] + x2 / shown_w * r["width"], r["y"] + y2 / shown_h * r["height"], steps=4)
    page.mouse.up()


def save(page, tmp_path: Path) -> dict:
    with page.expect_download() as download:
        page.click("#save")
    dst = tmp_path / download.value.suggested_filename
    download.value.save_as(dst)
    return json.loads(dst.read_text())


def near(a, b, tol: float) -> bool:
    return max(abs(u - v) for u, v in zip(a, b)) <= tol


def around(thumbs: list[int], frame: int, last: int) -> tuple[int, int]:
    """The thumbnails on either side of ``frame`` (the video's ends where there is none)."""
    return max((f for f in thumbs if f < frame), default=0), min((f for f in thumbs if f > frame), default=last)


def regions_panel(page) -> list[tuple[int, int, list[int]]]:
    """Each region's (start, end, key frames) as the panel shows them."""
    return page.eval_on_selector_all("#regions li", """els => els.map(li => [
        +li.querySelector('input.start').value, +li.querySelector('input.end').value,
        [...li.querySelectorAll('button.key')].map(b => parseInt(b.textContent))])""")


@needs_chromium
def test_keep_a_person_draw_regions_save_and_render_again(first, browser, tmp_path):
    """The whole review-and-fix loop in Chromium: one face kept visible, a fixed region with a start and end frame
    and a region moving between two key frames drawn where no face is, saved by the page and rendered with
    --decisions: the kept face is the input's, the regions are redacted in their spans only, the rest is the
    first output."""
    clip, d, report, html_text, data = first
    # the command to run next: full paths (run from anywhere), the saved file where the browser put it
    assert html.unescape(re.search(r'id="command">([^<]*)<', html_text).group(1)) == (
        f"trt-anon {clip.path.resolve()} --decisions DOWNLOADS/first.decisions.json -o {d.resolve()}/first.fixed.mp4")
    assert "DOWNLOADS</code>: the folder your browser saved the file in" in html_text
    page, errors = open_page(browser, Path(report.review))
    unedited = save(page, tmp_path)                                   # nothing edited: the run's document
    assert unedited == {**embedded(html_text), "added": []}
    assert page.get_attribute("#save", "data-name") == "first.decisions.json"
    frames = [int(f) for f in page.eval_on_selector_all(".draw", "els => els.map(e => e.dataset.frame)")]
    kept = face_of(data, 10, clip.boxes[10][0])["track"]
    page.click(f"#track-{kept} button[data-act=keep]")
    assert page.get_attribute(f"#track-{kept}", "data-action") == "keep"
    assert "1 of" in page.text_content("#summary")

    fixed_at = min(f for f in frames if f >= 4)                       # region 1: one box, frames fixed_at..+12
    fixed = [40, 260, 140, 340]
    draw(page, fixed_at, fixed, 640, 360)
    for end, value in (("end", fixed_at + 12), ("start", fixed_at)):   # typed: not the neighbours' span
        page.fill(f"#regions li:nth-child(1) input.{end}", str(value))
        page.press(f"#regions li:nth-child(1) input.{end}", "Enter")
    page.click("#new-region")                                         # region 2: two key frames, moving
    k0, k1 = fixed_at, min(f for f in frames if f >= fixed_at + 14)
    moving = ([470, 290, 550, 350], [560, 290, 640, 350])
    draw(page, k0, moving[0], 640, 360)
    draw(page, k1, moving[1], 640, 360)
    page.click(f'.draw[data-frame="{k1}"] .ask button.key')          # asked: a key frame of region 2
    assert page.text_content("#region-count") == "2"
    saved = save(page, tmp_path)
    assert errors == []

    assert {t["id"]: t["action"] for t in saved["tracks"]} == {
        t["id"]: "keep" if t["id"] == kept else "redact" for t in data["tracks"]}
    assert saved["frames"] == embedded(html_text)["frames"] and saved["audit"] == data["audit"]
    (r1, r2) = saved["added"]
    assert [k["frame"] for k in r1["keys"]] == [fixed_at, fixed_at + 12]
    assert r1["keys"][0]["box"] == r1["keys"][1]["box"]
    assert near(r1["keys"][0]["box"], fixed, 3)                       # video pixels, from a 0.6x thumbnail
    lo, hi = around(frames, k0, 32)[0], around(frames, k1, 32)[1]      # to the thumbnails on either side
    assert [k["frame"] for k in r2["keys"]] == [lo, k0, k1, hi]
    assert r2["keys"][0]["box"] == r2["keys"][1]["box"] and r2["keys"][2]["box"] == r2["keys"][3]["box"]
    assert near(r2["keys"][1]["box"], moving[0], 3) and near(r2["keys"][2]["box"], moving[1], 3)

    dec = tmp_path / "first.decisions.json"
    again = trt_anon.process(clip.path, tmp_path / "fixed.mp4", decisions_path=str(dec))
    src, out, before = decode_frames(clip.path), decode_frames(tmp_path / "fixed.mp4"), decode_frames(d / "first.mp4")
    assert len(out) == len(src) == again.frames == 33
    one, two = r1["keys"][0]["box"], r2["keys"][1:3]
    checked = 0
    for i, (s, o, b) in enumerate(zip(src, out, before)):
        face = next(f for f in data["frames"][i]["faces"] if f["track"] == kept)["box"]
        assert mean_diff(o, s, face) < 4, i                             # kept: the input, up to encoding
        for other in (f["box"] for f in data["frames"][i]["faces"] if f["track"] != kept):
            assert mean_diff(o, s, other) > 10 and mean_diff(o, b, other) < 4, i   # redacted as before
        a = min(max((i - k0) / (k1 - k0), 0), 1)
        box2 = [(1 - a) * u + a * v for u, v in zip(two[0]["box"], two[1]["box"])]
        for box, a0, a1 in ((one, fixed_at, fixed_at + 12), (box2, lo, hi)):
            if a0 <= i <= a1:
                assert mean_diff(o, s, box) > 5, (i, box)                # redacted in its span
                checked += 1
            else:
                assert mean_diff(o, s, box) < 4, (i, box)                # untouched outside it
        # everything else: the first output, past margins and mosaic cells (another face's box may cover one
        # more row of cells than the first run: its edge on a cell's border, rounded in the file, stays covered)
        rest = np.ones(s.shape[:2], bool)
        others = [(f["box"], 50) for f in data["frames"][i]["faces"] if f["track"] != kept]
        for (x1, y1, x2, y2), m in [(face, 100), (one, 50), (box2, 50), *others]:
            rest[max(0, int(y1) - m):int(y2) + m, max(0, int(x1) - m):int(x2) + m] = False
        assert float(np.abs(o.astype(np.int16) - b)[rest].mean()) < 1.5, i   # x264 noise: about 1
    assert checked == 13 + (hi - lo + 1)
    page.close()


@needs_chromium
def test_a_second_review_starts_with_the_first_ones_decisions(first, browser, tmp_path):
    """The page of a run with --decisions opens with its kept tracks and regions, and saves them unchanged."""
    clip, _, _, _, data = first
    keep = data["tracks"][-1]["id"]
    added = [{"keys": [{"frame": 2, "box": [40.0, 260.0, 140.0, 340.0]},
                       {"frame": 20, "box": [80.0, 250.0, 180.0, 330.0]}]}]
    data = {**data, "added": added,
            "tracks": [{**t, "action": "keep" if t["id"] == keep else "redact"} for t in data["tracks"]]}
    (tmp_path / "dec.json").write_text(json.dumps(data))
    report = trt_anon.process(clip.path, tmp_path / "second.mp4", decisions_path=str(tmp_path / "dec.json"),
                              review=True)
    page, errors = open_page(browser, Path(report.review))
    assert page.text_content("#region-count") == "1" and page.get_attribute(f"#track-{keep}", "data-action") == "keep"
    assert page.input_value("#regions li input.start") == "2" and page.input_value("#regions li input.end") == "20"
    saved = save(page, tmp_path)
    assert saved["added"] == added and errors == []
    assert {t["id"]: t["action"] for t in saved["tracks"]} == {t["id"]: t["action"] for t in data["tracks"]}
    page.close()


@needs_chromium
def test_drawing_on_a_portrait_video_saves_stored_pixels(browser, tmp_path):
    """A phone's portrait video is shown upright (turned): a box drawn there is saved in the stored frame's
    pixels, which --decisions reads."""
    clip = make_clip(tmp_path / "portrait.mp4", 180, 320, frames=12, rotation=90, audio=0,
                     faces=[Face(60, (40, 100), (1.0, 2.0))])
    report = trt_anon.process(clip.path, review=True)
    page, errors = open_page(browser, Path(report.review))
    assert page.get_attribute("body", "data-turns") == "1"
    stored = [200, 30, 300, 90]                                        # in the stored 320x180 frame
    draw(page, 0, stored, 320, 180, turns=1)
    box = save(page, tmp_path)["added"][0]["keys"][0]["box"]
    assert near(box, stored, 3) and errors == []
    page.close()


@needs_chromium
def test_review_page_screenshot_with_the_editor(first, browser, tmp_path):
    """The editor as a user sees it: cards with pictures, a kept card, a region drawn (a file to look at)."""
    import os
    clip, _, report, _, data = first
    page, _ = open_page(browser, Path(report.review))
    page.click(f"#track-{data['tracks'][0]['id']} button[data-act=keep]")
    draw(page, 0, [40, 260, 140, 340], 640, 360)
    page.locator(".tracks").scroll_into_view_if_needed()
    shot = tmp_path / "editor.png"
    page.screenshot(path=str(shot))
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (900, 1280) and (img.std(axis=2) > 40).mean() > 0.03
    assert Page(page.content()).body.get("data-editor") == "ready"
    if os.environ.get("TRT_ANON_KEEP_SHOT"):
        Path(os.environ["TRT_ANON_KEEP_SHOT"]).with_suffix(".editor.png").write_bytes(shot.read_bytes())
    page.close()


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """90 frames, one face: thumbnails a few frames apart in the middle of the video."""
    d = tmp_path_factory.mktemp("sparse")
    clip = make_clip(d / "walk.mp4", frames=90, faces=[Face(90, (60, 60), (2.0, 0))])
    report = trt_anon.process(clip.path, d / "walk.anon.mp4", review=True)
    return clip, d, report


@needs_chromium
def test_a_box_drawn_on_a_thumbnail_covers_the_frames_to_its_neighbours(sparse, browser, tmp_path):
    """A box drawn over something missed covers its frame and every frame to the thumbnails on either side (none
    of them shown), says so on its label and in the list, shows on those neighbours, and is rendered so."""
    clip, d, report = sparse
    page, errors = open_page(browser, Path(report.review))
    frames = sorted({int(f) for f in page.eval_on_selector_all(".draw", "els => els.map(e => e.dataset.frame)")})
    at = next(f for f in frames if f > 20 and around(frames, f, 89)[1] - f > 2 and f - around(frames, f, 89)[0] > 2)
    lo, hi = around(frames, at, 89)
    box = [40, 260, 140, 340]
    draw(page, at, box, 640, 360)
    assert regions_panel(page) == [[lo, hi, [at]]]
    assert page.text_content(f'.draw[data-frame="{at}"] .box.key span') == f"region 1 · frames {lo}–{hi}"
    for f in frames:   # shown wherever it applies: the neighbours included, nowhere else
        shown = page.locator(f'.draw[data-frame="{f}"] .box:not(.face)').count()
        assert shown == (lo <= f <= hi), f
    saved = save(page, tmp_path)
    (region,) = saved["added"]
    assert [k["frame"] for k in region["keys"]] == [lo, at, hi]
    assert all(k["box"] == region["keys"][0]["box"] for k in region["keys"]) and near(region["keys"][1]["box"], box, 3)
    assert errors == []
    page.close()

    trt_anon.process(clip.path, tmp_path / "fixed.mp4", decisions_path=str(tmp_path / "walk.anon.decisions.json"))
    src, out = decode_frames(clip.path), decode_frames(tmp_path / "fixed.mp4")
    covered = [i for i, (s, o) in enumerate(zip(src, out)) if mean_diff(o, s, region["keys"][1]["box"]) > 5]
    assert covered == list(range(lo, hi + 1))   # the frames between the thumbnails too, not one frame


@needs_chromium
def test_a_second_box_asks_and_a_save_or_a_done_region_starts_a_new_one(sparse, browser, tmp_path):
    """While a region is selected, a box drawn asks: a key frame of it, or a new region (or nothing: x, Escape);
    it never silently joins the region. After a save, or once a region's frames are typed, the next box starts a
    new region without asking."""
    clip, d, report = sparse
    page, errors = open_page(browser, Path(report.review))
    frames = sorted({int(f) for f in page.eval_on_selector_all(".draw", "els => els.map(e => e.dataset.frame)")})
    a, b, c, e, g, h = (frames[len(frames) * k // 8] for k in (1, 2, 3, 5, 6, 7))
    box = [40, 260, 140, 340]
    asking = ".ask"

    draw(page, a, box, 640, 360)                                      # nothing selected: a new region
    assert page.locator(asking).count() == 0 and page.text_content("#region-count") == "1"
    assert "asks" in page.text_content("#draw-hint")
    draw(page, b, [60, 260, 160, 340], 640, 360)                      # region 1 selected: asked
    assert page.locator(f'.draw[data-frame="{b}"] {asking}').count() == 1
    assert page.text_content(f'.draw[data-frame="{b}"] {asking} button.key') == "key frame of region 1"
    assert page.text_content("#region-count") == "1"                 # nothing added before the answer
    page.click(f'.draw[data-frame="{b}"] {asking} button.new')
    assert page.locator(asking).count() == 0 and [r[2] for r in regions_panel(page)] == [[a], [b]]
    draw(page, c, [80, 260, 180, 340], 640, 360)                      # region 2 selected: asked again
    page.click(f'.draw[data-frame="{c}"] {asking} button.key')
    assert [r[2] for r in regions_panel(page)] == [[a], [b, c]]
    draw(page, c, [90, 260, 190, 340], 640, 360)                      # on its own key frame: replace? no (x)
    assert "replaces region 2" in page.text_content(f'.draw[data-frame="{c}"] {asking} button.key')
    page.click(f'.draw[data-frame="{c}"] {asking} button.cancel')
    draw(page, e, box, 640, 360)                                      # no again, with Escape
    page.keyboard.press("Escape")
    assert page.locator(asking).count() == 0 and [r[2] for r in regions_panel(page)] == [[a], [b, c]]
    first_save = save(page, tmp_path)
    assert [[k["frame"] for k in r["keys"]][1:-1] for r in first_save["added"]] == [[a], [b, c]]
    assert near(first_save["added"][1]["keys"][2]["box"], [80, 260, 180, 340], 3)   # the x kept the first box

    assert "starts a new region" in page.text_content("#draw-hint")   # saved: the next box is a new region
    draw(page, e, box, 640, 360)
    assert page.locator(asking).count() == 0 and [r[2] for r in regions_panel(page)] == [[a], [b, c], [e]]
    page.fill("#regions li:nth-child(3) input.end", str(g))            # its frames typed: that region is done
    page.press("#regions li:nth-child(3) input.end", "Enter")
    draw(page, h, box, 640, 360)
    assert page.locator(asking).count() == 0
    assert [r[2] for r in regions_panel(page)] == [[a], [b, c], [e], [h]] and regions_panel(page)[2][1] == g
    assert errors == []
    page.close()
