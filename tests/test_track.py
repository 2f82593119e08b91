"""Hold after the last hit, back-fill before the first, eyes re-derived every 4th frame."""
import numpy as np

from trt_anon.detect.detections import FILLED, HELD, HIT, Detections
from trt_anon.track import Tracker


def face(x, y=50, size=40, eye_dy=0.0):
    box = np.array([[x, y, x + size, y + size]], np.float32)
    lm = np.zeros((1, 5, 2), np.float32)
    lm[0, 0] = [x + 0.3 * size, y + 0.4 * size + eye_dy]
    lm[0, 1] = [x + 0.7 * size, y + 0.4 * size + eye_dy]
    return Detections(box, np.array([0.9], np.float32), lm)


def run(dets, ttl=5, eyes_every=4, chunk=3):
    t = Tracker(ttl, eyes_every)
    out = []
    for i in range(0, len(dets), chunk):  # pushed in chunks: results must not depend on batching
        out += t.push(dets[i:i + chunk])
    out += t.flush()
    assert len(out) == len(dets)
    return out


def test_hold_and_back_fill_cover_missed_frames():
    empty = Detections.empty()
    seq = [empty] * 10 + [face(100)] * 5 + [empty] * 10
    out = run(seq)
    kinds = [tuple(o.kind) for o in out]
    assert kinds[:5] == [()] * 5
    assert kinds[5:10] == [(FILLED,)] * 5      # back-filled ttl=5 frames before the first hit
    assert kinds[10:15] == [(HIT,)] * 5
    assert kinds[15:20] == [(HELD,)] * 5       # held ttl frames after the last hit
    assert kinds[20:] == [()] * 5
    held = out[19].xyxy[0]
    assert held[0] < 100 and held[2] > 140     # a held box grows, it never shrinks


def test_gap_shorter_than_ttl_is_bridged_by_one_track():
    empty = Detections.empty()
    seq = [face(100), face(102), empty, empty, face(108), face(110)]
    out = run(seq, chunk=1)
    assert [len(o) for o in out] == [1] * 6
    assert tuple(out[2].kind) == (HELD,)


def test_same_results_for_any_batch_size():
    rng = np.random.default_rng(0)
    seq = [face(100 + i) if rng.random() > 0.3 else Detections.empty() for i in range(40)]
    ref = run(seq, chunk=1)
    for chunk in (2, 7, 32):
        got = run(seq, chunk=chunk)
        for a, b in zip(ref, got):
            np.testing.assert_array_equal(a.xyxy, b.xyxy)
            np.testing.assert_array_equal(a.kind, b.kind)


def test_eyes_refreshed_every_4th_frame_and_carried_with_face():
    # the eyes move down inside the face on every frame; the band follows only on refresh frames
    seq = [face(100 + 2 * i, eye_dy=float(i)) for i in range(12)]
    out = run(seq, chunk=5)
    top = [o.eyes[0, 1] - o.xyxy[0, 1] for o in out]  # band top relative to the face box
    for i in range(12):
        refresh = i - i % 4
        assert abs(top[i] - top[refresh]) < 1e-4, f"frame {i} eye band not carried from frame {refresh}"
    assert top[4] > top[0] and top[8] > top[4]
    # carried with the face: the band moves with the face box horizontally
    assert out[3].eyes[0, 0] - out[0].eyes[0, 0] == 6.0


def test_two_faces_do_not_swap():
    seq = [Detections(np.concatenate([face(50 + i).xyxy, face(300 - i).xyxy]), np.array([0.9, 0.8], np.float32),
                      np.zeros((2, 5, 2), np.float32)) for i in range(10)]
    out = run(seq)
    assert all(len(o) == 2 and (o.kind == HIT).all() for o in out)
