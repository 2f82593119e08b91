"""``detect_every``: the detector looks at fewer frames, the tracker fills the others from both sides.
1 is the output of a detector on every frame, exactly; N > 1 and "auto" call it less and keep every face
covered; frames not looked at are no misses."""
from __future__ import annotations

import av
import numpy as np
import pytest
from synth import Face, make_clip
from test_frames import decoded, run
from test_track import face

import trt_anon
from trt_anon.config import Config
from trt_anon.detect import select_detector
from trt_anon.detect.detections import FILLED, HELD, HIT, WEAK, Detections
from trt_anon.errors import ConfigError
from trt_anon.redact import pixel_mask, select_redactor
from trt_anon.track import Tracker

# one face from the start, a fast one, and one that comes in between two looks (frame 25, not a multiple of 2-8)
FACES = [Face(70, (60, 60), (3.0, 0.5)), Face(56, (560, 40), (-9.0, 1.5), source="hopper"),
         Face(48, (450, 180), (-2.0, 0.0), enter=25, flip=True)]
N = 60


class Counting:
    """The CPU detector, counting the frames it is given."""

    def __init__(self) -> None:
        self.inner = select_detector(Config(), gpu=False)
        self.name, self.frames = self.inner.name, 0

    def __call__(self, frames):
        self.frames += len(frames)
        return self.inner(frames)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("every") / "in.mp4", 640, 360, frames=N, faces=FACES)


@pytest.fixture(scope="module")
def batches(clip):
    return decoded(clip.path, batch=8)


def test_config_takes_1_to_8_and_auto():
    assert Config(detect_every="3").detect_every == 3 and Config(detect_every="auto").longest_gap() == 4
    for bad in (0, 9, "sometimes", 2.5, True):
        with pytest.raises(ConfigError, match="detect_every"):
            Config(detect_every=bad)
    from trt_anon.cli import _parser
    assert _parser().parse_args(["--detect-every", "2", "x.mp4"]).detect_every == "2"


def test_every_frame_is_the_detector_on_every_frame(batches):
    """detect_every=1: the boxes and pixels of a tracker fed the detector's boxes for every frame (the path
    before frames could be skipped), exactly."""
    detector = Counting()
    frames, boxes, _ = run(trt_anon.Anonymizer(backend="cpu", detect_every=1, detector=detector), batches)
    assert detector.frames == N
    c = Config()
    tracker, dets = Tracker(c.ttl, c.eyes_every, c.lookback), []
    for b in batches:
        dets += tracker.push(detector.inner(b))
    dets += tracker.flush()
    src = np.concatenate(batches)
    expected = trt_anon.Anonymizer(backend="cpu").boxes(dets, *src.shape[1:3])
    assert len(boxes) == N and all(np.array_equal(a, e) for a, e in zip(boxes, expected))
    redactor = select_redactor(c, gpu=False)
    for f, s, b in zip(frames, src, expected):
        assert np.array_equal(f, redactor(s.copy()[None], [b])[0])


def covered(clip, boxes) -> list[tuple[int, int]]:
    """(frame, face width) of every face at least 24 px wide, 40% in view, not fully under the mosaic."""
    leaks = []
    w, h = clip.size
    for i, b in enumerate(boxes):
        mask = pixel_mask(b, 25, h, w) if len(b) else np.zeros((h, w), bool)
        for box, (seen, share) in zip(clip.boxes[i], clip.in_view(i)):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            if share >= 0.4 and x2 - x1 >= 24 and mask[y1:y2, x1:x2][seen].mean() < 0.99:
                leaks.append((i, x2 - x1))
    return leaks


@pytest.mark.parametrize("every", [2, 4, 8, "auto"])
def test_fewer_looks_every_face_covered(clip, batches, every):
    detector = Counting()
    _, boxes, _ = run(trt_anon.Anonymizer(backend="cpu", detect_every=every, detector=detector), batches)
    assert len(boxes) == N
    if every != "auto":  # frames 0, N, 2N, ... and the last frame, looked at when the stream ended there
        assert detector.frames == len(range(0, N, every)) + ((N - 1) % every != 0)
    else:  # the face moving 9 px a frame (a sixth of its width) has it look at every frame while it is in
        assert detector.frames <= N
    assert covered(clip, boxes) == []


def test_process_writes_the_same_with_fewer_looks(clip, tmp_path):
    r = trt_anon.process(clip.path, tmp_path / "out.mp4", json_path=str(tmp_path / "out.json"), backend="cpu",
                         detect_every=3)
    assert r.frames == N
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == N


# --- the tracker, on boxes ------------------------------------------------------------------------------------
def looks(seq, every):
    """``seq`` as a detector looking at every ``every``-th frame gives it."""
    return [d if i % every == 0 else None for i, d in enumerate(seq)]


def track(dets, last=None, ttl=5, gap=4, chunk=3):
    t = Tracker(ttl, 4, 30, gap)
    out = []
    for i in range(0, len(dets), chunk):
        out += t.push(dets[i:i + chunk])
    out += t.flush(last)
    assert len(out) == len(dets)
    return out


def test_frames_between_looks_are_interpolated_and_grown_by_the_motion():
    seq = [face(100 + 4 * i) for i in range(13)]
    out = track(looks(seq, 4))
    for i in (1, 2, 3, 5, 9):
        assert tuple(out[i].kind) == (HELD,)
        b = out[i].xyxy[0]
        x = 100 + 4 * i
        assert b[0] <= x and b[2] >= x + 40 and b[0] > x - 8  # on the line, grown by a quarter of 16 px
        eyes = out[i].eyes[0]
        assert eyes[0] < x + 0.3 * 40 and eyes[2] > x + 0.7 * 40   # the eye band goes along
    assert [tuple(out[i].kind) for i in (0, 4, 8, 12)] == [(HIT,)] * 4


def test_frames_not_looked_at_are_no_misses():
    """ttl=1: one look without the face ends the hold; four frames not looked at do not."""
    empty = Detections.empty()
    seq = [face(100)] * 5 + [empty] * 12
    out = track(looks(seq, 4), ttl=1)
    assert all(len(o) == 1 for o in out[:12])       # hits at 0 and 4, held at 8 (one miss) and after it
    assert all(len(o) == 0 for o in out[12:])       # the look at 12 is the second miss


def test_a_face_coming_in_between_looks_is_back_filled_over_them():
    empty = Detections.empty()
    seq = [empty] * 9 + [face(200 + 2 * i) for i in range(9, 24)]   # comes in at 9; looks at 8 and 12
    out = track(looks(seq, 4), ttl=0)
    assert len(out[8]) == 0
    assert all(FILLED in o.kind for o in out[9:12])
    for i in (9, 10, 11):
        b, x = out[i].xyxy[0], 200 + 2 * i
        assert b[0] <= x and b[2] >= x + 40


def test_a_face_after_the_last_look_is_found_when_the_stream_ends():
    empty = Detections.empty()
    seq = [empty] * 10 + [face(300)] * 2            # looks at 0, 4, 8; the face comes in at 10
    dets = looks(seq, 4)
    assert all(len(o) == 0 for o in track(dets)[10:])
    out = track(dets, last=seq[-1])
    assert all(len(o) == 1 for o in out[10:]) and tuple(out[11].kind) == (HIT,)


def test_a_face_leaving_between_looks_is_held_until_the_next():
    empty = Detections.empty()
    seq = [face(100 + 3 * i) for i in range(10)] + [empty] * 7
    out = track(looks(seq, 4), ttl=0)            # looks at 0, 4, 8, 12: the face is gone at 12, no hold
    assert all(len(o) == 1 for o in out[:12]) and tuple(out[11].kind) == (HELD,)
    b = out[9].xyxy[0]
    assert b[0] <= 100 + 3 * 9 and b[2] >= 140 + 3 * 9   # along the motion
    assert all(len(o) == 0 for o in out[12:])


def test_auto_plans_from_what_the_last_look_left():
    from trt_anon.cadence import Cadence
    frames = np.zeros((8, 90, 160, 3), np.uint8)
    c = Cadence("auto")
    t = Tracker(5, 4, 0, 4)
    # indices into the batch; frame = first + index
    assert c.pick(frames, 0, t) == [3, 7]                       # nothing tracked: every 4th, ending the batch
    t.push([face(10 + 2 * i) for i in range(2)])
    assert c.pick(frames, 2, t) == list(range(8))               # a new face, its motion not known yet
    t.push([face(10 + 2 * i) for i in range(2, 16)])
    assert c.pick(frames[:6], 16, t) == [1, 5]                  # 2 px a frame on a 40 px face: every 4th
    assert c.pick(frames, 16, t) == [3, 7]
    t.push([face(10 + 2 * i) if i % 4 == 3 else None for i in range(16, 24)])
    assert c.pick(frames, 24, t) == [3, 7]                      # found where its motion said: still so
    fast = Tracker(5, 4, 0, 4)
    fast.push([face(30 + 20 * i) for i in range(16)])
    assert c.pick(frames, 16, fast) == list(range(8))           # 20 px a frame: every frame
    grows = Tracker(5, 4, 0, 4)
    grows.push([face(10, size=30 + 2 * i) for i in range(4)])
    assert c.pick(frames, 4, grows) == list(range(8))           # a new face growing: its back-fill fit
    weak = Detections(face(58).xyxy, np.array([0.15], np.float32), face(58).landmarks,
                      kind=np.array([WEAK], np.uint8))
    for last in (Detections.empty(), weak):                     # missed, or found only weakly: every frame
        u = Tracker(5, 4, 0, 4)
        u.push([face(10 + 2 * i) for i in range(24)] + [last])
        assert c.pick(frames, 25, u) == list(range(8))
    assert Cadence(3).pick(frames, 7, t) == [2, 5]              # a fixed N: frames 9 and 12 of the stream


def test_auto_looks_at_the_whole_batch_where_a_look_is_not_what_the_faces_predict():
    from trt_anon.cadence import Cadence
    c = Cadence("auto")
    t = Tracker(5, 4, 0, 4)
    t.push([face(10 + 2 * i) for i in range(16)])
    rest = [0, 1, 2, 4, 5, 6]

    def at(d3, d7):
        return [d3 if i == 3 else d7 if i == 7 else None for i in range(8)]
    assert c.more(at(face(48), face(56)), 16, t) == []                                  # where the motion says
    assert c.more(at(face(48), Detections.empty()), 16, t) == rest                      # missed
    two = Detections(np.concatenate([face(56).xyxy, face(300).xyxy]), np.array([0.9, 0.9], np.float32),
                     np.concatenate([face(56).landmarks, face(300).landmarks]))
    assert c.more(at(face(48), two), 16, t) == rest                                     # a new face
    weak = Detections(face(48).xyxy, np.array([0.15], np.float32), face(48).landmarks,
                      kind=np.array([WEAK], np.uint8))
    assert c.more(at(weak, face(56)), 16, t) == rest                                    # found only weakly
    assert c.more(at(face(48, size=20), face(56)), 16, t) == rest                       # partly hidden
    assert c.more(at(face(48), face(56)), 16, Tracker(5, 4, 0, 4)) == rest              # a face, none tracked
    assert Cadence(4).more(at(face(48), face(300)), 16, t) == []                        # a fixed N: never


# two faces sliding in fast across the frame's edges in the first frames: the first look the plan makes finds
# them already in; every frame before it must be covered as a detector on every frame covers it
FAST_IN = [Face(48, (650, 150), (-24.0, 0.0), source="hopper"), Face(56, (-60, 60), (20.0, 1.0))]


def test_auto_covers_fast_faces_coming_in_before_a_look(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 640, 360, frames=N, faces=FAST_IN)
    batches = decoded(clip.path, batch=8)
    every = {}
    for setting in (1, "auto"):
        detector = Counting()
        _, boxes, _ = run(trt_anon.Anonymizer(backend="cpu", detect_every=setting, detector=detector), batches)
        every[setting] = (covered(clip, boxes), detector.frames)
    assert every[1] == ([], N)
    assert every["auto"][0] == [] and every["auto"][1] < N


def test_auto_skips_frames_pushed_one_at_a_time(tmp_path):
    """The frame API fed one frame at a time (a robot's or a camera's loop): ``auto`` holds frames up to its next
    look and tracks them together, so it skips frames where the faces are where their motion says; every face
    is covered, every frame comes back, in order, and ``flush`` gives the ones held."""
    clip = make_clip(tmp_path / "in.mp4", 640, 360, frames=N, faces=[Face(70, (60, 60), (1.5, 0.3)),
                                                                     Face(56, (420, 150), (-1.0, 0.2))])
    single = [f[None] for b in decoded(clip.path, batch=8) for f in b]
    detector = Counting()
    anon = trt_anon.Anonymizer(backend="cpu", detector=detector)
    frames, boxes, starts = run(anon, single)
    assert len(frames) == len(boxes) == N and [s for s, n in starts if n] == sorted(s for s, n in starts if n)
    assert covered(clip, boxes) == []
    assert detector.frames < 0.75 * N, detector.frames  # one at a time without holding: all N
