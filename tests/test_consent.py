"""--keep-face: a consenting person stays visible where their track matches their photo, everyone else is redacted
in every frame, on real faces from packaged photos (tests/synth.py). Tests marked ``consent`` need the
``[consent]`` extra (dlib and its models): skipped without it, run by CI's consent pass (.ci/run)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import NoRayCounter, cell_deviation, decode_frames, faces_to_check
from PIL import Image
from synth import Face, face_box, face_source, make_clip, render

import trt_anon
from trt_anon import consent
from trt_anon.cli import demo_clip, main
from trt_anon.detect.detections import HIT, Regions
from trt_anon.errors import ConfigError


def _extra() -> bool:
    try:
        consent._models()
        import dlib  # noqa: F401
    except (ConfigError, ImportError):
        return False
    return True


def needs_extra(test):
    """A test that runs the embedding network: skipped without the extra; CI's consent pass (-m consent) runs it."""
    skip = pytest.mark.skipif(not _extra(), reason="needs the consent extra: pip install '.[consent]'")
    return pytest.mark.consent(skip(test))


def _photo(path, source: str, size: float = 160, width: int = 400, height: int = 400):
    """A reference photo: ``source`` (synth's face sources) drawn at ``size`` px on the coffee background."""
    frame, _, _ = next(render(width, height, [Face(size, ((width - size) / 2, height / 4), source=source)], 1))
    Image.fromarray(frame).save(path)
    return path


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """Eileen Collins (the reference) and two others (Grace Hopper and an LFW face), 640x360, 160 frames: she
    walks right past the LFW face and meets Hopper coming the other way, leaves at frame 70 and comes back from the
    right at frame 100; the LFW face leaves at 60 and comes back at 90."""
    d = tmp_path_factory.mktemp("consent")
    Image.fromarray(face_source("astronaut")[0]).save(d / "eileen.png")  # her portrait, as a user would give it
    faces = [Face(90, (30, 120), (3, 0), enter=0, leave=70, source="astronaut"),
             Face(80, (520, 110), (-3, 0), enter=0, leave=130, source="hopper"),
             Face(80, (300, 20), enter=10, leave=60, source="lfw:3"),
             Face(80, (300, 20), enter=90, source="lfw:3"),
             Face(90, (500, 150), (-2, 0), enter=100, source="astronaut")]
    return make_clip(d / "clip.mp4", 640, 360, 160, faces=faces, audio=0), d / "eileen.png"


def _shown(frame: np.ndarray, box) -> bool:
    """Whether the face in ``box`` (clipped to the frame) is there unredacted (textured, not a mosaic's flat cells)."""
    h, w = frame.shape[:2]
    return cell_deviation(frame, np.clip(box, 0, [w - 1, h - 1, w, h])) > 6


@needs_extra
def test_the_consenting_person_stays_visible_and_everyone_else_is_redacted(crossing, tmp_path):
    clip, eileen = crossing
    report = trt_anon.process(clip.path, tmp_path / "out.mp4", keep_faces=[str(eileen)],
                              json_path=str(tmp_path / "out.json"))
    src, out = decode_frames(clip.path), decode_frames(tmp_path / "out.mp4")
    doc = json.loads((tmp_path / "out.json").read_text())
    kept_tracks = {k["track"] for k in report.kept}
    assert kept_tracks and all(k["person"] == "eileen" and k["distance"] < consent.THRESHOLD for k in report.kept)
    shown = 0
    for i, (before, after) in enumerate(zip(src, out)):
        others = [f for f in clip.faces if f.source != "astronaut"]
        for f in others:  # the others: redacted in every frame they are in view
            box = face_box(f, i)
            if box is None:
                continue
            for b, mask in faces_to_check(clip, i):
                if np.allclose(b, (max(0, box[0]), max(0, box[1]), min(640, box[2]), min(360, box[3]))):
                    assert cell_deviation(after, b, shown=mask) < 4, f"frame {i}: {f.source} shown"
        faces = doc["frames"][i]["faces"]
        for face in faces:  # a face marked kept is hers, and there unredacted
            if face.get("kept"):
                assert face["track"] in kept_tracks
                x1, y1, x2, y2 = face["box"]
                assert any(f.source == "astronaut" and (b := face_box(f, i)) and abs(b[0] - x1) < 20
                           for f in clip.faces), f"frame {i}: a kept face is not hers"
                assert _shown(after, face["box"]), f"frame {i}: kept but redacted"
                shown += 1
    # she is shown in a good share of the frames she is in (not near another face, nor leaving)
    assert shown >= 50 and sum(k["frames"] for k in report.kept) == shown
    tracks = {t["id"]: t for t in doc["tracks"]}
    for t in kept_tracks:
        assert tracks[t]["action"] == "matched" and tracks[t]["person"] == "eileen" and tracks[t]["distance"] < 0.34
    assert all(t["action"] == "redact" for t in doc["tracks"] if t["id"] not in kept_tracks)
    assert doc["report"]["kept"] == report.kept


@needs_extra
def test_the_demo_keeps_her_as_her_face_goes_under_the_other_head(crossing, tmp_path):
    """The packaged demo (``trt-anon --demo``): at its end her face goes under the other one's head (its hair and
    background over her forehead, the two face boxes still apart). Those faces count only where they match (one
    embedded at 0.50 from her photo, which would have redacted her track for good as a whole face's mismatch does);
    she stays shown."""
    _, eileen = crossing
    report = trt_anon.process(demo_clip(), tmp_path / "demo.anon.mp4", keep_faces=[str(eileen)])
    assert len(report.kept) == 1 and report.kept[0]["frames"] >= 100, report.kept


@needs_extra
def test_without_a_match_the_output_is_that_of_a_run_without_keep_face(crossing, tmp_path):
    """Hopper as the reference, in a clip without her: nothing kept, and the same boxes as a plain run (the keeper
    reads the tracker a frame at a time and changes nothing it does)."""
    clip, _ = crossing
    hopper = _photo(tmp_path / "grace.png", "hopper")
    other = make_clip(tmp_path / "two.mp4", 640, 360, 60, audio=0, faces=[
        Face(90, (30, 120), (3, 0), source="astronaut"), Face(80, (400, 60), (-1, 0.5), source="lfw:7")])
    a = trt_anon.process(other.path, tmp_path / "a.mp4", keep_faces=[str(hopper)], json_path=str(tmp_path / "a.json"))
    b = trt_anon.process(other.path, tmp_path / "b.mp4", json_path=str(tmp_path / "b.json"))
    assert a.kept == [] and a.redacted_boxes == b.redacted_boxes > 0
    fa, fb = (json.loads((tmp_path / n).read_text())["frames"] for n in ("a.json", "b.json"))
    assert fa == fb


@needs_extra
@pytest.mark.parametrize("me, other", [("lfw:3", "lfw:97"), ("lfw:21", "lfw:61")])
def test_a_look_alike_from_lfw_is_not_kept(me, other, tmp_path):
    """The two pairs of different people of scikit-image's LFW subset whose faces embed closest (scripts/
    consent_threshold.py: faces 3 and 97 at 0.414, 21 and 61 at 0.417): one's photo as the reference, a clip of the
    other stays redacted; a clip of the reference's own face is kept (the test can fail)."""
    ref = _photo(tmp_path / "me.png", me, size=200)
    for source, kept in ((other, False), (me, True)):
        clip = make_clip(tmp_path / f"{source[4:]}.mp4", 480, 270, 50, audio=0,
                         faces=[Face(110, (150, 60), (1, 0), source=source)])
        report = trt_anon.process(clip.path, tmp_path / f"{source[4:]}.anon.mp4", keep_faces=[str(ref)])
        assert bool(report.kept) == kept, (source, report.kept)


@needs_extra
def test_her_face_lit_brighter_than_in_her_photo_is_kept(crossing, tmp_path, monkeypatch):
    """Her face at 1.6x the brightness of her photo (its bright parts clipped, as an over-exposed camera clips
    them) embeds far from the photo, near the photo brightened alike: kept by the reference's exposure bracket,
    not without it; Hopper lit alike is redacted."""
    _, eileen = crossing
    clip = make_clip(tmp_path / "bright.mp4", 640, 360, 40, audio=0, faces=[
        Face(80, (60, 100), (1, 0), gain=1.6, source="astronaut"), Face(80, (420, 100), (-1, 0), gain=1.6,
                                                                        source="hopper")])
    report = trt_anon.process(clip.path, tmp_path / "bright.anon.mp4", keep_faces=[str(eileen)])
    assert [k["person"] for k in report.kept] == ["eileen"], report.kept
    frames = decode_frames(tmp_path / "bright.anon.mp4")
    hopper = Face(80, (420, 100), (-1, 0), source="hopper")
    assert not any(_shown(f, face_box(hopper, i)) for i, f in enumerate(frames))
    monkeypatch.setattr(consent, "EXPOSURES", (1.0,))   # her photo as it is only
    consent._people.cache_clear()
    try:
        report = trt_anon.process(clip.path, tmp_path / "plain.anon.mp4", keep_faces=[str(eileen)])
    finally:
        consent._people.cache_clear()
    assert report.kept == []


class _Tracks:
    """The tracker as the keeper reads it: its live tracks' number, box, last detection, whether it was sure, and
    its score; their motion (not measured here)."""

    def __init__(self):
        self.tracks = []

    def motion(self):
        return [(t.box, t.velocity) for t in self.tracks]


class _T:
    def __init__(self, id, box, last_hit, sure=True, score=0.9, velocity=None):
        self.id, self.box, self.last_hit, self.sure, self.score = id, np.asarray(box, np.float32), last_hit, sure, score
        self.velocity = velocity   # px per frame (x1, y1, x2, y2) as the tracker measured it; None: not measured


def _stamp(frame: np.ndarray, box, f: int) -> None:
    """Write frame number ``f`` into the pixel at the centre of ``box``: the embedder below reads it back from the
    crop, so that a face compared later (as a stretch ends) is still the face of its own frame."""
    frame[int((box[1] + box[3]) / 2), int((box[0] + box[2]) / 2)] = (f % 256, f // 256, 0)


class _Fixed:
    """An embedder whose faces are who the test says, by the frame each face is from (``_stamp``); ``turned``: the
    frames whose face looks away (its nose far from between its eyes)."""

    def __init__(self, who, turned=lambda f: False):
        self.who, self.turned = who, turned
        self.face = None
        self.boxes = []   # the face boxes it was shown, as (the face's frame, the box's height-to-width ratio)

    def landmarks(self, crop, box):
        r, g, _ = crop[int((box[1] + box[3]) / 2), int((box[0] + box[2]) / 2)]
        self.face = int(r) + 256 * int(g)
        self.boxes.append((self.face, float(box[3] - box[1]) / float(box[2] - box[0])))
        nose = [45, 20] if self.turned(self.face) else [25, 20]
        return np.array([[10, 10], [20, 10], [40, 10], [30, 10], nose], np.float32), None

    def embed(self, crop, shape):
        return self.who(self.face)


def _keeper(who, lookback=36, turned=lambda f: False):
    person = consent.Person("me", ("me.jpg",), np.zeros((1, 128), np.float32))
    emb = _Fixed(who, turned)
    return consent.Keeper((person,), lookback, embedder=emb), emb


def _run(keeper, emb, frames: int, box=(100, 100, 180, 190), sure=lambda f: True, near=lambda f: False,
         small=lambda f: False, gap: float = 2, held=lambda f: False, narrow=lambda f: False, jump: float = 0,
         weak=lambda f: False):
    """One face tracked through ``frames`` frames (textured, so that it is sharp; ``small``: too small to compare
    there; ``narrow``: a fifth of it hidden from the left; not ``sure``: missed; ``weak``: found, not surely),
    beside another face ``gap`` px to its right where
    ``near`` (not found there where ``held``; its box ``jump`` px further left every other frame); the frames it is
    shown in."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (360, 640, 3), np.uint8)
    tracker = _Tracks()
    for f in range(frames):
        shape = (box[0], box[1], box[0] + 40, box[1] + 45) if small(f) else \
            (box[0] + (box[2] - box[0]) // 5, *box[1:]) if narrow(f) else box
        frame = frame.copy()   # (a new frame, as a decoder gives)
        _stamp(frame, shape, f)
        tracker.tracks = [_T(0, shape, f if sure(f) else f - 1, sure=not weak(f))]
        if near(f):
            x = box[2] + gap - (jump if f % 2 else 0)
            tracker.tracks.append(_T(1, (x, box[1], x + 80, box[3]), f - 2 if held(f) else f))
        keeper.look(f, frame, tracker)
    keeper.finish()   # the end of the stream: its last good face compared
    regions = [Regions(np.array([box], np.float32), np.ones(1, np.float32), np.array([HIT], np.uint8),
                       np.zeros(1, np.int32), np.array([box], np.float32)) for _ in range(frames)]
    return [i for i, r in enumerate(keeper.mark(regions, 0)) if r.kept.any()]


ME, SOMEONE = np.zeros(128, np.float32), np.full(128, 0.1, np.float32)   # distances 0 and ~1.13


def test_a_track_is_shown_from_its_start_to_its_last_match_once_several_faces_matched():
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 80)
    assert shown[0] == 0 and keeper.compared >= consent.SAMPLES
    # a frame is shown only with a match at or after it: to the last face, compared at the end of the stream
    assert shown == list(range(80))
    keeper, emb = _keeper(lambda f: ME)   # its last 20 frames too small to compare: not shown
    shown = _run(keeper, emb, 80, small=lambda f: f >= 60)
    assert shown == list(range(60))
    # comparisons: 3 to show it, then one every lookback - 8 frames, and its last face
    assert keeper.compared <= consent.SAMPLES + 80 // (36 - 2 * consent.SPACING) + 2


def test_one_face_that_matches_nobody_redacts_the_track_from_then_on():
    """A swap the geometry does not see (a cut between two people framed alike): her faces until frame 40,
    someone else's after. Nothing after the last match before the cut is shown, nor anything after the mismatch,
    the frames before it not yet written included."""
    keeper, emb = _keeper(lambda f: ME if f < 40 else SOMEONE)
    shown = _run(keeper, emb, 100)
    assert shown == [] or max(shown) < 40
    assert keeper.tracks[0].rejected
    keeper, emb = _keeper(lambda f: ME if f < 40 else SOMEONE)   # frames handed out as they become final
    assert all(not r.kept.any() for r in keeper.mark([], 0))


def test_a_stretch_ends_where_the_face_is_missed_or_another_may_take_its_place():
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, sure=lambda f: f != 50)
    assert 50 not in shown                # the miss: the stretch ends at 49 (its last face compared there)
    assert 40 in shown and any(f > 50 for f in shown)   # and a new stretch, matched again
    # a face coming up to hers, 2 px away, and jumping 30 px at each look: the two boxes could be swapped
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, jump=30)
    assert not any(40 <= f < 60 for f in shown) and any(f >= 60 for f in shown)
    # one jumping from 12 px right of hers to 12 px left of it at each look: its boxes never meet hers, its way does
    # (from 41: at 40, where it comes, hers is beside it, compared and matched)
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, gap=12, jump=12 + 80 + 12 + 80)
    assert not any(41 <= f < 60 for f in shown) and any(f >= 60 for f in shown)
    # one overlapping hers by 20 px (in front of it) and staying put: each box is far nearer its own, the
    # stretch goes on (from the look after the one it came at: a face new there could be either)
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, gap=-20)
    assert 40 not in shown and all(f in shown for f in range(41, 120))
    # ... but not found at one look (50): where it is found again (51), new at that look, it could be hers
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, gap=-20, held=lambda f: f == 50)
    assert 51 not in shown and all(f in shown for f in range(52, 120))
    # ... not found from 45 on, held there: where it may be by then does not hold her box, so the face found
    # there is hers, and her stretch goes on
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, gap=-20, held=lambda f: f >= 45)
    assert all(f in shown for f in range(41, 120))
    # ... one overlapping hers by 60 px, not found from 45 on: it may be where hers is, at her size
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60, gap=-60, held=lambda f: f >= 45)
    assert not any(45 <= f < 60 for f in shown) and all(f in shown for f in range(60, 120))
    # ... there from the first frame (the first look: nothing to tell them apart by)
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: f < 60, gap=-20)
    assert 0 not in shown and all(f in shown for f in range(1, 120))


def test_a_face_lost_inside_hers_ends_her_stretch_only_once_it_may_be_where_she_is():
    """A smaller box found once inside hers (the detector's partial duplicate of her face, or a face behind hers;
    listed before hers, as the tracker may), then held there, never found again: where it may have gone since does
    not hold her box, so the face found there is still hers and her stretch goes on. Moving (its motion measured),
    it may be anywhere near after a while: from then on her stretch ends at every look while it is held."""
    def shown(velocity):
        keeper, emb = _keeper(lambda f: ME)
        rng = np.random.default_rng(0)
        frame, box, tracker = rng.integers(0, 255, (360, 640, 3), np.uint8), (100, 100, 180, 190), _Tracks()
        for f in range(120):
            frame = frame.copy()
            _stamp(frame, box, f)
            tracker.tracks = [_T(1, (125, 120, 155, 160), 30, velocity=velocity)] * (f >= 30) + [_T(0, box, f)]
            keeper.look(f, frame, tracker)
        keeper.finish()
        regions = [Regions(np.array([box], np.float32), np.ones(1, np.float32), np.array([HIT], np.uint8),
                           np.zeros(1, np.int32), np.array([box], np.float32)) for _ in range(120)]
        return [i for i, r in enumerate(keeper.mark(regions, 0)) if r.kept.any()]

    held = shown(None)   # (at 30, new there, it could be hers; beside it, hers is compared every few frames, shown
    assert 30 not in held and all(f in held for f in range(31, 115))   # up to its last match)
    # at half a pixel a frame, its reach (a quarter of its 40 px, and the way it may have gone) holds her box, less
    # the detector's jitter, from frame 62
    moving = shown(np.full(4, 0.5, np.float32))
    assert 31 in moving and 55 in moving and not any(f >= 62 for f in moving)


@pytest.mark.parametrize("lost_first", [False, True])   # (the tracker lists its tracks in any order)
def test_her_box_jumping_toward_a_face_not_found_ends_her_stretch(lost_first):
    """Another face 10 px right of hers, not found from frame 40 on (held where it was). Her stretch goes on: her box
    stays far nearer its own last box than the other's. At 60 her box jumps 40 px toward where the other face was:
    that could be the other face, moved unseen, taking her number; her stretch ends there. A look later her box
    stays where it came: a new stretch, shown once matched."""
    keeper, emb = _keeper(lambda f: ME)
    frame, tracker = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8), _Tracks()
    for f in range(120):
        box = (100, 100, 180, 190) if f < 60 else (140, 100, 220, 190)
        frame = frame.copy()
        _stamp(frame, box, f)
        tracks = [_T(0, box, f), _T(1, (190, 100, 270, 190), min(f, 39))]
        tracker.tracks = tracks[::-1] if lost_first else tracks
        keeper.look(f, frame, tracker)
    keeper.finish()
    regions = [Regions(np.array([(100, 100, 180, 190) if f < 60 else (140, 100, 220, 190)], np.float32),
                       np.ones(1, np.float32), np.array([HIT], np.uint8), np.zeros(1, np.int32),
                       np.zeros((1, 4), np.float32)) for f in range(120)]
    shown = [i for i, r in enumerate(keeper.mark(regions, 0)) if r.kept.any()]
    assert all(f in shown for f in range(40, 58)) and 60 not in shown and all(f in shown for f in range(61, 110))


def test_a_face_beside_another_counts_only_where_it_matches():
    """Another face 12 px from hers (within a tenth of their widths, where its head may hide an edge of hers;
    further than the two moved since the last look and the detector's jitter): her faces there are partly hidden.
    Where they match, her stretch goes on, shown throughout. Where they embed as someone else, that does not redact
    her (her own face so hidden embeds far from her photo), but nothing after it shows until a face matches again.
    Not found there (held where it was last seen), it could not be where hers is, at her size: her stretch goes
    on (held over hers, it may be: test_a_stretch_ends_where_the_face_is_missed_or_another_may_take_its_place)."""
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 70, gap=12)
    assert shown == list(range(120))
    assert any(40 <= f < 70 for f, _ in emb.boxes)   # compared there
    keeper, emb = _keeper(lambda f: SOMEONE if 40 <= f < 70 else ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 70, gap=12)
    assert not keeper.tracks[0].rejected and set(range(36)) <= set(shown) and set(range(75, 120)) <= set(shown)
    assert not any(40 <= f < 70 for f in shown)
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 70, gap=12, held=lambda f: True)
    assert shown == list(range(120))


def test_a_face_beside_another_the_whole_time_is_shown_once_matched():
    """Her face beside another from the first frame to the last: never whole, matched on its faces there."""
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 80, near=lambda f: True, gap=12)
    assert shown == list(range(80))


def test_someone_else_beside_another_is_compared_a_few_times_and_never_shown():
    """A stranger beside another face the whole time: faces partly hidden that do not match redact nothing, so
    they are compared every 4 frames only until ``SAMPLES`` of them did not match, then every ``lookback`` - 8
    (what they cost), and never shown."""
    keeper, emb = _keeper(lambda f: SOMEONE)
    assert _run(keeper, emb, 300, near=lambda f: True, gap=12) == []
    assert not keeper.tracks[0].rejected
    per_track = consent.SAMPLES + 300 // (36 - 2 * consent.SPACING) + 1
    assert 2 * consent.SAMPLES < keeper.compared <= 2 * per_track   # (and the other face)
    keeper, emb = _keeper(lambda f: ME if f in (3, 7) else SOMEONE)   # hers twice (a swap no rule sees): too few
    assert _run(keeper, emb, 300, near=lambda f: True, gap=12) == []
    assert {3, 7} <= {f for f, _ in emb.boxes}


def test_a_face_cut_by_the_frame_edge_counts_only_where_it_matches():
    """A face at the frame's left edge (cut by it): where it embeds as someone else, the track is not redacted (a
    face so cut embeds far from its photo), but shown only from a match after it; where it matches, it counts."""
    keeper, emb = _keeper(lambda f: SOMEONE if f < consent.SPACING else ME)
    shown = _run(keeper, emb, 120, box=(0, 100, 80, 190))
    assert not keeper.tracks[0].rejected and shown == list(range(shown[0], 120))
    assert consent.SPACING <= shown[0] <= 2 * consent.SPACING
    keeper, emb = _keeper(lambda f: SOMEONE)
    assert _run(keeper, emb, 120, box=(0, 100, 80, 190)) == [] and not keeper.tracks[0].rejected


def test_a_shown_face_partly_hidden_is_compared_every_few_frames():
    """Shown, then beside another face from 40 (partly hidden), matching until 60 and no more after (hidden more and
    more), then missed at 80: shown up to its last match, a few frames before 60 (not only up to the last of the
    comparisons a whole face gets, one every ``lookback`` - 8 frames)."""
    keeper, emb = _keeper(lambda f: SOMEONE if f >= 60 else ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 80, gap=12, sure=lambda f: f < 80)
    assert shown == list(range(len(shown))) and 60 - consent.SPACING <= len(shown) <= 60
    assert not keeper.tracks[0].rejected


def test_a_partly_hidden_face_that_does_not_match_is_judged_on_a_whole_one_before_it():
    """Whole until ``start``, then beside another face and embedding as someone else, then missed 10 frames later:
    the first of those faces compared matches nobody, so the stretch ends there and its last whole face at least
    ``SETTLE`` frames before she was beside the other (not one she may have been becoming hidden in, which embed as
    someone else too) is compared instead; shown up to it. Wherever the last comparison fell."""
    for start in (50, 53, 68):
        keeper, emb = _keeper(lambda f: SOMEONE if f > start - consent.SETTLE else ME)
        shown = _run(keeper, emb, 120, near=lambda f: start <= f < start + 10, gap=12, sure=lambda f: f < start + 10)
        assert not keeper.tracks[0].rejected, start
        assert shown == list(range(len(shown)))
        assert start - 2 * consent.SETTLE < len(shown) <= start - consent.SETTLE + 1
    # missed right after it came beside the other face, before any of those faces was compared: the same
    keeper, emb = _keeper(lambda f: SOMEONE if f > 42 - consent.SETTLE else ME)
    shown = _run(keeper, emb, 120, near=lambda f: 42 <= f < 43, gap=12, sure=lambda f: f < 43)
    assert not keeper.tracks[0].rejected and shown == list(range(len(shown))) and len(shown) > 30


def test_a_partly_hidden_face_looking_away_ends_the_stretch_too():
    """Beside another face from 40 and looking away until 51 (not compared), then a stranger's face there (a swap no
    rule sees) until 61, then hers, whole: none of the stranger's frames is shown, however many faces looked away
    before (a face not whole that cannot be compared vouches for nothing either)."""
    keeper, emb = _keeper(lambda f: SOMEONE if 52 <= f <= 60 else ME, turned=lambda f: 40 <= f < 52)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 61, gap=12)
    assert not any(52 <= f <= 60 for f in shown) and set(range(70, 120)) <= set(shown)


def test_the_doubt_after_a_face_that_matched_nobody_lasts_until_a_match():
    """A stranger's face beside another from 40 (a swap no rule sees) matches nobody at its first comparison; the
    track is then missed at 46, its faces too small to compare from 47 to 52, and hers again from 53: the stretches
    after that face show only from a match, so not 47-52."""
    keeper, emb = _keeper(lambda f: SOMEONE if 40 <= f < 53 else ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 46, gap=12, sure=lambda f: f != 46,
                 small=lambda f: 47 <= f < 53)
    assert not any(40 <= f < 53 for f in shown) and set(range(60, 120)) <= set(shown)


def test_a_match_lets_partly_hidden_faces_be_compared_often_again():
    """Three faces beside another that match nobody (40-52), then whole and matching (60-69), then beside another
    again and matching (70-109), then missed: shown up to a few frames before 110, its faces beside the other
    compared every 4 frames again after the match."""
    keeper, emb = _keeper(lambda f: SOMEONE if 40 <= f < 53 else ME)
    shown = _run(keeper, emb, 120, near=lambda f: 40 <= f < 60 or 70 <= f < 110, gap=12, sure=lambda f: f < 110)
    assert set(range(60, 110 - consent.SPACING)) <= set(shown) and not keeper.tracks[0].rejected


def test_a_partly_hidden_face_that_matches_another_person_redacts_the_track():
    """Two people: she matched, then her face beside another one matches the other person: redacted for good."""
    people = (consent.Person("me", ("me.jpg",), ME[None]), consent.Person("you", ("you.jpg",), SOMEONE[None]))
    emb = _Fixed(lambda f: SOMEONE if f >= 40 else ME)
    keeper = consent.Keeper(people, 36, embedder=emb)
    assert _run(keeper, emb, 120, near=lambda f: f >= 40, gap=12) == [] and keeper.tracks[0].rejected


def test_a_face_not_found_may_be_as_far_as_its_measured_motion_takes_it():
    """Another face last found 60 px to the right of hers, then not found for 30 frames: moving 0.5 px a frame (the
    tracker's measured motion) it cannot have come to where her face is, and her stretch goes on; at 5 px a frame
    it could have (from frame 63), and her stretch ends (a new one is matched again after). At 3 px a frame it
    could reach over her face, but not to its place: her stretch goes on."""
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)
    box = (100, 100, 180, 190)
    for speed, ends in ((0.5, False), (3.0, False), (5.0, True)):
        keeper, emb = _keeper(lambda f: ME)
        tracker = _Tracks()
        for f in range(120):
            frame = frame.copy()
            _stamp(frame, box, f)
            tracker.tracks = [_T(0, box, f)]
            if f < 70:
                tracker.tracks.append(_T(1, (240, 100, 320, 190), min(f, 40),
                                         velocity=np.array([-speed, 0, -speed, 0], np.float32)))
            keeper.look(f, frame, tracker)
        keeper.finish()
        regions = [Regions(np.array([box], np.float32), np.ones(1, np.float32), np.array([HIT], np.uint8),
                           np.zeros(1, np.int32), np.array([box], np.float32)) for _ in range(120)]
        shown = [i for i, r in enumerate(keeper.mark(regions, 0)) if r.kept.any()]
        assert (shown == list(range(120))) != ends, (speed, shown)


def test_a_stretch_that_ends_on_a_weak_face_is_judged_on_one_from_before_it():
    """Something comes over her face: found less surely from frame 30 (a weak detection ends the stretch), its last
    faces before that (27-29) already embed as someone else. The stretch is compared on its last good face at least
    ``SETTLE`` frames before its end (hers), not on those, one of which would redact her for good: shown up to that
    face, and again once matched after."""
    keeper, emb = _keeper(lambda f: SOMEONE if 27 <= f < 30 else ME)
    shown = _run(keeper, emb, 120, weak=lambda f: 30 <= f < 36)
    assert not keeper.tracks[0].rejected
    assert set(range(26)) <= set(shown) and set(range(36, 120)) <= set(shown)
    assert not set(range(26, 36)) & set(shown)


def test_a_stretch_that_ends_on_a_miss_is_judged_on_its_last_good_face():
    """A face gone at once (missed, not found weakly first): its last good face is the one compared as the stretch
    ends, and its frames show up to it."""
    keeper, emb = _keeper(lambda f: ME)
    shown = _run(keeper, emb, 120, sure=lambda f: not 30 <= f < 36)
    assert set(range(30)) <= set(shown) and set(range(36, 120)) <= set(shown)


def test_a_face_whose_box_narrows_counts_only_where_it_matches():
    """Its box a fifth narrower than the track's own shape (something in front of one side) and embedding as someone
    else there (a partly hidden face does): the track is not redacted (shown again from its next match), and its
    own shape is still that of its whole faces (a narrow face that matches does not change it)."""
    keeper, emb = _keeper(lambda f: SOMEONE if 40 <= f < 45 else ME)
    shown = _run(keeper, emb, 120, narrow=lambda f: 40 <= f < 70)
    assert not keeper.tracks[0].rejected and not any(40 <= f < 45 for f in shown)
    assert set(range(36)) <= set(shown) and set(range(50, 120)) <= set(shown)
    ratios = {round(r, 3) for _, r in emb.boxes}
    assert len(ratios) == 2   # both shapes compared
    matched = {round(r, 3) for r in keeper.tracks[0].matched}   # the whole face's ratio, not the narrowed one's
    assert min(ratios) in matched and max(ratios) not in matched
    # narrowed faces that embed as someone else are not compared as whole ones: a whole face that did would redact
    keeper, emb = _keeper(lambda f: SOMEONE if 40 <= f < 70 else ME)
    _run(keeper, emb, 120, narrow=lambda f: 40 <= f < 70)
    assert not keeper.tracks[0].rejected


def test_too_few_matches_show_nothing():
    keeper, emb = _keeper(lambda f: ME)
    assert _run(keeper, emb, consent.SPACING * (consent.SAMPLES - 1)) == []


@needs_extra
@pytest.mark.parametrize("what, words", [
    ("none", "no face found"), ("two", "2 faces"), ("small", "use one of at least"), ("missing", "no such file"),
    ("empty", "the folder has no photos"), ("text", "not a photo")])
def test_a_reference_photo_without_exactly_one_clear_face_is_a_one_line_error(what, words, tmp_path, capsys,
                                                                                crossing):
    clip, _ = crossing
    ref = tmp_path / f"{what}.png"
    if what == "none":
        Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(ref)
    elif what == "two":
        frame, _, _ = next(render(640, 360, [Face(140, (40, 60), source="astronaut"),
                                             Face(140, (400, 60), source="hopper")], 1))
        Image.fromarray(frame).save(ref)
    elif what == "small":
        _photo(ref, "astronaut", size=50)
    elif what == "empty":
        ref = tmp_path / "nobody"
        ref.mkdir()
    elif what == "text":
        ref = tmp_path / "text.jpg"
        ref.write_text("not a photo")
    assert main([str(clip.path), "-o", str(tmp_path / "out.mp4"), "--keep-face", str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err and "--keep-face" in err, err
    assert not (tmp_path / "out.mp4").exists()


def test_without_the_extra_keep_face_is_a_one_line_error(tmp_path, monkeypatch, capsys, clips):
    photo = _photo(tmp_path / "me.png", "astronaut")
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib fails, as where it is not installed
    consent._people.cache_clear()
    consent.shared_embedder.cache_clear()
    assert main([str(clips["two"].path), "-o", str(tmp_path / "out.mp4"), "--keep-face", str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'trt_anon[consent]'" in err, err
    assert not (tmp_path / "out.mp4").exists()
    consent._people.cache_clear()


def test_keep_face_and_a_decisions_file_are_refused_together():
    with pytest.raises(ConfigError, match="decisions file says itself"):
        trt_anon.Config(keep_faces=("me.jpg",), decisions_path="run.json")


@needs_extra
def test_a_folder_is_one_person_and_several_are_told_apart(crossing, tmp_path):
    """Two references: Eileen (a folder with two photos of her) and Hopper: each kept face is the person its
    track matched, and the frame-level Anonymizer keeps them as process() does."""
    clip, eileen = crossing
    folder = tmp_path / "eileen"
    folder.mkdir()
    (folder / "a.png").write_bytes(eileen.read_bytes())
    _photo(folder / "b.png", "astronaut", size=120)
    grace = _photo(tmp_path / "grace.png", "hopper")
    anon = trt_anon.Anonymizer(keep_faces=[str(folder), str(grace)], backend="cpu")
    frames = decode_frames(clip.path)
    shown = []   # (frame, box, track) of each face left visible
    for ready in [*(anon.push(np.stack(frames[i:i + 8])) for i in range(0, len(frames), 8)), anon.flush()]:
        for j, d in enumerate(ready.detections):
            shown += [(ready.start + j, d.xyxy[k], int(d.track[k])) for k in np.flatnonzero(d.kept)]
    person = {k["track"]: k["person"] for k in anon.kept()}
    assert set(person.values()) == {"eileen", "grace"}, anon.kept()
    source = {"eileen": "astronaut", "grace": "hopper"}
    for i, box, track in shown:
        near = min((f for f in clip.faces if face_box(f, i) is not None),
                   key=lambda f: abs(face_box(f, i)[0] - box[0]) + abs(face_box(f, i)[1] - box[1]))
        assert near.source == source[person[track]], (i, track, person[track])
    assert len(shown) == sum(k["frames"] for k in anon.kept()) > 60


@needs_extra
def test_segments_keep_her_as_a_whole_run_does(tmp_path, monkeypatch):
    """A long video cut into segments (what --ray runs, here without Ray): each segment keeps her, from its own
    context, and Hopper stays redacted in every frame of the joined file."""
    from trt_anon import scale
    from trt_anon.config import Config
    from trt_anon.plan import plan

    eileen = tmp_path / "eileen.png"
    Image.fromarray(face_source("astronaut")[0]).save(eileen)
    clip = make_clip(tmp_path / "k.mp4", 480, 270, frames=150, audio=0, keyint=25, faces=[
        Face(90, (20, 80), (1.0, 0), source="astronaut"), Face(80, (360, 90), (-0.3, 0), source="hopper")])
    job = plan(clip.path, tmp_path / "k.anon.mp4", Config(backend="cpu", keep_faces=(str(eileen),), lookback=12))
    segs = scale.plan_segments(job, 50)
    assert len(segs) == 3

    monkeypatch.setattr(scale, "_where", lambda: {})
    parts = []
    for s in segs:
        piece = str(tmp_path / f"piece{s.number}.mp4")
        parts.append(scale.run_segment(job, s, piece, NoRayCounter()))
    report = scale.join(job, *parts)
    assert {k["person"] for k in report.kept} == {"eileen"} and len({k["track"] >> 20 for k in report.kept}) == 3
    out = decode_frames(job.output)
    assert len(out) == 150
    hopper = clip.faces[1]
    assert all(cell_deviation(out[i], face_box(hopper, i)) < 4 for i in range(150))
    assert sum(cell_deviation(out[i], face_box(clip.faces[0], i)) > 6 for i in range(150)) >= 100


@pytest.fixture(scope="module")
def comes_back(tmp_path_factory):
    """Eileen Collins leaves at frame 30 and comes back at 45 (two tracks); Grace Hopper throughout; two LFW
    look-alikes (faces 21 and 61, the closest different pair of the subset) one after the other."""
    d = tmp_path_factory.mktemp("people")
    clip = make_clip(d / "back.mp4", 640, 360, 80, audio=0, faces=[
        Face(90, (40, 100), (1, 0), leave=30, source="astronaut"),
        Face(90, (60, 110), (0.5, 0), enter=45, flip=True, source="astronaut"),
        Face(80, (480, 80), (-0.5, 0), source="hopper"),
        Face(100, (250, 200), leave=38, source="lfw:21"),
        Face(100, (400, 220), enter=42, source="lfw:61")])
    report = trt_anon.process(clip.path, d / "back.anon.mp4", review=True, json_path=str(d / "back.json"))
    return clip, d, report, json.loads((d / "back.json").read_text())


def _cards(page: str) -> list[list[int]]:
    import re
    return [[int(t) for t in ids.split()] for ids in re.findall(r'<div class="track" id="track-\d+" '
                                                                  r'data-track="([\d ]+)"', page)]


def _track_of(data, clip, k: int) -> int:
    """The track that follows face ``k`` of the clip (the nearest box in its first frame)."""
    f = clip.faces[k]
    i = f.enter + 2
    b = face_box(f, i)
    return min(data["frames"][i]["faces"], key=lambda x: abs(x["box"][0] - b[0]) + abs(x["box"][1] - b[1]))["track"]


@needs_extra
def test_the_review_page_has_a_card_per_person_and_look_alikes_apart(comes_back):
    clip, d, report, data = comes_back
    page = open(report.review, encoding="utf-8").read()
    cards = _cards(page)
    eileen = {_track_of(data, clip, 0), _track_of(data, clip, 1)}
    assert len(eileen) == 2 and sorted(eileen) in [sorted(c) for c in cards], cards   # one card, both tracks
    for k in (2, 3, 4):   # Hopper, and each look-alike, on a card of their own
        assert [_track_of(data, clip, k)] in cards, (k, cards)
    assert sum(len(c) for c in cards) == len(data["tracks"]) and "split out" in page


@needs_extra
def test_keep_a_person_split_a_track_out_save_and_render_again(comes_back, tmp_path):
    from test_editor import open_page, save
    from test_review import CHROMIUM
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    from test_editor import FLAGS
    clip, d, report, data = comes_back
    first, second = _track_of(data, clip, 0), _track_of(data, clip, 1)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            page, errors = open_page(browser, Path(report.review))
            card = f'.track[data-track~="{first}"]'
            page.click(f"{card} .switch button[data-act=keep]")
            both = save(page, tmp_path)
            actions = {t["id"]: t["action"] for t in both["tracks"]}
            assert actions[first] == actions[second] == "keep" and list(actions.values()).count("keep") == 2
            assert {t["person_card"] for t in both["tracks"] if t["id"] in (first, second)} == {min(first, second)}
            page.click(f'button.split[data-split="{second}"]')   # her second track: someone else after all
            assert page.get_attribute(f"#track-{second}", "data-action") == "redact"
            assert page.text_content("#person-count") == str(len(_cards(open(report.review).read())) + 1)
            split = save(page, tmp_path)
            assert not errors, errors
        finally:
            browser.close()
    actions = {t["id"]: t["action"] for t in split["tracks"]}
    assert actions[first] == "keep" and actions[second] == "redact"
    (tmp_path / "dec.json").write_text(json.dumps(split))
    trt_anon.process(clip.path, tmp_path / "fixed.mp4", decisions_path=str(tmp_path / "dec.json"))
    out = decode_frames(tmp_path / "fixed.mp4")
    assert all(_shown(out[i], face_box(clip.faces[0], i)) for i in range(5, 25))        # kept
    assert not any(_shown(out[i], face_box(clip.faces[1], i)) for i in range(50, 80))   # split out: redacted


@needs_extra
def test_the_review_page_of_a_keep_face_run_has_her_card_as_matched(crossing, tmp_path):
    """Her tracks (she leaves and comes back) on one card named after her photo, kept where matched; rendered
    again from the run's --json file, the same faces are shown and the others redacted."""
    clip, eileen = crossing
    report = trt_anon.process(clip.path, tmp_path / "out.mp4", keep_faces=[str(eileen)], review=True,
                              json_path=str(tmp_path / "out.json"))
    page = open(report.review, encoding="utf-8").read()
    kept = sorted(k["track"] for k in report.kept)
    assert len(kept) == 2 and kept in [sorted(c) for c in _cards(page)]
    import re
    card = re.search(rf'<div class="track" id="track-{kept[0]}" data-track="[\d ]+" data-action="(\w+)">(.*?)'
                     r'<div class="switch">(.*?)</div></div>', page, re.S)
    assert card.group(1) == "matched" and "<b>eileen</b> · 2 tracks" in card.group(2)
    assert 'data-act="matched" aria-pressed="true">kept where matched' in card.group(3)
    trt_anon.process(clip.path, tmp_path / "again.mp4", decisions_path=str(tmp_path / "out.json"))
    frames = json.loads((tmp_path / "out.json").read_text())["frames"]
    shown = 0
    for entry, frame in zip(frames, decode_frames(tmp_path / "again.mp4")):
        for face in entry["faces"]:
            assert _shown(frame, face["box"]) == bool(face.get("kept")), (entry["frame"], face)
            shown += bool(face.get("kept"))
    assert shown == sum(k["frames"] for k in report.kept) > 50
