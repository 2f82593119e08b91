"""Temporal safety: tracks from sure detections, continued by weak ones, held along their motion,
and back-filled along their motion into the frames before the detector was sure.

Two thresholds (the idea behind ByteTrack): the detector returns candidates down to a low score,
flagged ``WEAK`` below the threshold. Only a sure detection starts a track; a weak one never makes
a box on its own, but continues a track (instead of a hold) and, when a track starts, is linked
backwards from it (the frames where the face was already there but not yet sure).

A frame's boxes are final only once ``lookback`` later frames have been seen, because a track
first seen in frame f is back-filled into frames before f: for ``ttl`` frames with its first box
(as before), and up to ``lookback`` frames along a straight-line fit of its first boxes (position
and size), while the fit spans at least half the distance it reaches back, the face it predicts
is at least ``MIN_FILL`` px, and there is a reason the detector missed it: it extrapolates
smaller, or the track began with weak candidates. The pipeline therefore writes each frame
``lookback`` frames late; ``push`` returns the frames that became final. Back-fill is computed
when a frame is handed out, from what was seen up to ``lookback`` frames after it (so it reaches
at most 2/3 of ``lookback`` behind a first box, the same for any batch size).

Frames the detector did not look at (``None`` in ``push``; ``detect_every``) are no misses: ``ttl``
counts frames looked at. Their boxes come from the frames looked at on either side, which the
delay makes possible: a track with a box on both sides is interpolated (position, size and eye
band), grown by a share of the motion between the two; a track that ends in between is held from
its last box along its motion; a track that begins is back-filled over them from its first box.

A face that walks behind another is not lost: a track that vanishes where another face (its head: the
face box grown by ``HEAD``) is, with its motion measured on boxes of its full size clear of other faces
(the ones it gives while going behind are cut), is occluded. It is held on the straight line through
those boxes, at their size, for up to ``lookback`` frames after its last detection (not only ``ttl``),
its eye band with it (past that, held on where it stopped while the face in front covers it). A detection
near where it is held or where that line puts it (half the face's size either way, a third of its width or
more: it may be coming out half hidden) continues the track, under its number; until the face is seen
whole again its box also covers the hold (while the hold still follows the line), and the frames between
the two sightings not yet handed out get the straight line between them instead of the hold (``lookback``
makes that possible), each end the whole face around its detection and where the line puts it.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .detect.detections import FILLED, HELD, HIT, WEAK, Detections, Regions, eye_band, iou

MATCH_IOU = 0.2
HOLD_GROWTH = 0.05  # a held box grows by this fraction of its size per side per missed frame
HIDDEN_BY = 0.25    # a missed face this much under a detected one may be behind it: held while so
HEAD = 0.3          # a face box grown by this share of its size per side: the head around it, which hides faces too
FILL_GROWTH = 0.02  # an extrapolated back-fill box grows by this per side per frame back (fit error)
FIRST_N = 20        # a track's first boxes, which the back-fill fit uses (reaching back up to twice their span)
LAST_N = 10         # its last boxes, which the velocity for holds and matching uses
MIN_FIT = 3         # boxes needed before a track's motion is trusted
MIN_FILL = 10.0     # px: extrapolated faces smaller than this are not back-filled (no face to hide)
LINK_GAP = 2        # frames without a weak candidate that backward linking bridges
PARTIAL = 0.75      # a detection below this fraction of its track's predicted area: the face is partly hidden
SMALLER = 0.95      # back-fill past ttl only while the face extrapolates smaller than this fraction of its first width
BETWEEN_MARGIN = 0.25  # a box interpolated between two looks grows by this share of the motion between them, per side
REAPPEAR_WIDTH = (0.3, 2.0)  # a face coming out from behind another continues its track at this share of its width
REAPPEAR_NEAR = 0.5  # ... with its centre within this share of its size per side of where its motion says
MEASURED = 20       # frames from a face's last box clear of other faces to its last detection, its motion still known
WHOLE = 0.85        # a box this much of the width and height of a face's recent ones shows all of it
REFILL_MARGIN = 0.1  # the box of a face behind another, between the frames it was seen in, grows by this per side


@dataclass(eq=False)  # a track is itself only (``in`` compares by identity)
class _Track:
    box: np.ndarray        # last face box
    eyes_rel: np.ndarray   # eye band relative to the face box (fractions of w, h)
    score: float
    last_hit: int          # frame index of the last detection (sure or weak)
    eyes_at: int           # frame index where the eye band was last derived from landmarks
    weak_start: bool = False  # its first box is a weak candidate, linked backwards
    filled_back: bool = False  # back-filled past ttl in an earlier frame: the frames after it are filled too
    hit_look: int = 0      # the look (frames the detector looked at, counted) of the last detection
    hidden_look: int = -1  # the last look in which a detected face covered this missed one
    out: tuple | None = None  # (frame, box, eye band) it gave the last frame looked at
    sure: bool = True      # its last detection was sure and of its full size (not weak, not partly hidden)
    occluded: bool = False  # it vanished behind another face: held along its motion up to lookback frames
    id: int = -1           # the face's number in the stream: every box it gets carries it (Regions.track)
    cls: int = 0           # what it follows (detections.CLASSES): only a detection of that class continues it
    first: list = field(default_factory=list)                        # the first FIRST_N (frame, box)
    last: deque = field(default_factory=lambda: deque(maxlen=LAST_N))  # the last LAST_N (frame, box)
    whole: deque = field(default_factory=lambda: deque(maxlen=LAST_N))  # ... of those sure and of full size

    def region(self, box: np.ndarray, eyes: np.ndarray, kind: int, score: float | None = None) -> tuple:
        """One box of this track for a frame's ``Regions``: (box, eyes, score, kind, track, class)."""
        return box, eyes, self.score if score is None else score, kind, self.id, self.cls

    def size(self) -> np.ndarray:
        """(width, height) of the face as its recent boxes of full size show it (the median)."""
        return np.median(np.stack([b[2:] - b[:2] for _, b in self.whole]), axis=0).astype(np.float32)

    def around(self, box: np.ndarray) -> np.ndarray:
        """A box of the face's full size (``size``) centred on ``box``, and holding it."""
        centre, half = (box[:2] + box[2:]) / 2, np.maximum(self.size(), box[2:] - box[:2]) / 2
        return np.concatenate([centre - half, centre + half]).astype(np.float32)

    def whole_size(self, box: np.ndarray) -> bool:
        """Whether ``box`` is as wide and tall as the face's recent boxes of full size (none cut by another face)."""
        return len(self.whole) < MIN_FIT or bool(((box[2:] - box[:2]) >= WHOLE * self.size()).all())

    def measured(self) -> bool:
        """Whether its motion is known: boxes of its full size, clear of other faces, until shortly before its last
        detection."""
        return len(self.whole) >= MIN_FIT and self.last_hit - self.whole[-1][0] <= MEASURED

    def see(self, f: int, box: np.ndarray) -> None:
        self.last.append((f, box))
        if len(self.first) < FIRST_N:
            self.first.append((f, box))


def _fit(obs) -> tuple[np.ndarray, float] | None:
    """Least-squares slope of x1, y1, x2, y2 per frame over (frame, box) pairs, and the frames spanned."""
    if len(obs) < MIN_FIT:
        return None
    t = np.array([f for f, _ in obs], np.float64)
    b = np.stack([box for _, box in obs]).astype(np.float64)
    span = t.max() - t.min()
    if span < 2:
        return None
    tc = t - t.mean()
    return (tc @ (b - b.mean(axis=0)) / (tc @ tc)).astype(np.float32), float(span)


def _line(obs, f: int) -> np.ndarray | None:
    """The box in frame f on the least-squares line through (frame, box) pairs; None while too few to tell."""
    fit = _fit(obs)
    if fit is None:
        return None
    t = np.array([g for g, _ in obs], np.float64)
    return (np.stack([box for _, box in obs]).mean(axis=0) + fit[0] * (f - t.mean())).astype(np.float32)


def _grown(box: np.ndarray, k: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return box + np.array([-k * w, -k * h, k * w, k * h], np.float32)


def _area(b: np.ndarray) -> float:
    return float(max(b[2] - b[0], 0) * max(b[3] - b[1], 0))


def _heads(boxes: np.ndarray) -> np.ndarray:
    """Face boxes grown to the heads around them (``HEAD`` per side): what hides a face behind one."""
    size = boxes[:, 2:] - boxes[:, :2]
    return boxes + np.concatenate([-HEAD * size, HEAD * size], axis=1)


def _hull(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])]).astype(np.float32)


def _relative(band: np.ndarray, box: np.ndarray) -> np.ndarray:
    w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
    return np.array([(band[0] - box[0]) / w, (band[1] - box[1]) / h, (band[2] - box[0]) / w, (band[3] - box[1]) / h],
                    np.float32)


def _absolute(rel: np.ndarray, box: np.ndarray) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + rel[0] * w, box[1] + rel[1] * h, box[0] + rel[2] * w, box[1] + rel[3] * h], np.float32)


def _covered(box: np.ndarray, others: np.ndarray) -> float:
    """The largest fraction of ``box``'s area that one of ``others`` covers."""
    if len(others) == 0:
        return 0.0
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return float((iw * ih).max() / max((box[2] - box[0]) * (box[3] - box[1]), 1e-6))


class Tracker:
    """Streams per-frame detections in, final per-frame boxes out (``lookback`` frames later)."""

    def __init__(self, ttl: int = 5, eyes_every: int = 4, lookback: int = 0, gap: int = 1, first_id: int = 0) -> None:
        """``gap``: the most frames from one looked at to the next; the frames between are held until the next.
        ``first_id``: the first track's number (a segment of a file numbers its tracks apart from the others')."""
        self.ttl, self.eyes_every = ttl, eyes_every
        self.lookback = max(ttl, lookback, gap if gap > 1 else 0)  # back-fill reaches at least ttl frames
        self.tracks: list[_Track] = []   # alive: seen within ttl frames
        self.young: list[_Track] = []    # first seen after the next frame to hand out: back-fill still to do
        self.pending: dict[int, list[tuple]] = {}  # frame -> [(box, eyes, score, kind, track, class)]
        self.weak: dict[int, list[tuple]] = {}     # frame -> unclaimed weak candidates [(box, band, score, class)]
        self.next_frame = 0   # next frame index to push
        self.next_final = 0   # next frame index to hand out
        self.looks = 0        # frames looked at so far
        self.last_look = -1   # the last frame looked at
        self.unseen: set[int] = set()  # frames not looked at, not yet handed out
        self.next_id = first_id

    def push(self, dets: list[Detections | None]) -> list[Regions]:
        """Add the detections of the next frames (None: a frame the detector did not look at); return the
        frames whose boxes are now final."""
        for d in dets:
            if d is None:
                self.unseen.add(self.next_frame)
            else:
                self._step(self.next_frame, d)
            self.next_frame += 1
        return self._pop(self.next_frame - self.lookback)

    def flush(self, last: Detections | None = None, upto: int | None = None) -> list[Regions]:
        """End of stream: every remaining frame is final. ``last``: the detections of the last frame, pushed as
        not looked at (a face that came in after the last look is covered, back-filled from there). ``upto``:
        only the frames before it are made final, with what was seen so far, and the stream goes on (a live
        frame due before the frames after it came: the tracks are kept, the frames after ``upto`` wait)."""
        f = self.next_frame - 1
        if last is not None and f in self.unseen:
            self.unseen.discard(f)
            self._step(f, last)
        upto = self.next_frame if upto is None else min(upto, self.next_frame)
        for t in self.tracks:  # frames after the last look: held along the motion
            self._hold_over(t, upto)
        return self._pop(upto)

    def motion(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The faces being tracked: last box and its motion per frame (x1, y1, x2, y2; None while too few boxes
        to tell)."""
        return [(t.box, None if (fit := _fit(t.last)) is None else fit[0]) for t in self.tracks]

    def unsure(self) -> bool:
        """Whether the last frame looked at left a face unsure: candidates on no track (a face the detector is
        not sure of), a face tracked that it did not find there surely at its full size, or a new face that
        still being back-filled that may be past ttl (it began weakly or grows)."""
        return bool(self.weak.get(self.last_look)) or any(not t.sure or t.last_hit != self.last_look
                                                          for t in self.tracks) or \
            any(t.weak_start or self._grows(t) for t in self.young if t in self.tracks)

    def _grows(self, t: _Track) -> bool:
        """Whether track t's first boxes say it grows enough to be back-filled past ttl (its fit then reaches
        back as far as the span of boxes after its first allows: every frame looked at keeps that span)."""
        fit = _fit(t.first)
        w0 = t.first[0][1][2] - t.first[0][1][0]
        return fit is not None and (fit[0][2] - fit[0][0]) * self.lookback > (1 - SMALLER) * w0

    def expected(self, f: int, det: Detections) -> bool:
        """Whether the detections of frame f (after the frames pushed) are what the faces tracked predict: one
        sure candidate of its full size on each face, and no other."""
        if len(det) != len(self.tracks):
            return False
        if not len(det):
            return True
        pred = np.stack([self._predict(t, f) for t in self.tracks])
        overlap = iou(det.xyxy, pred)
        for i in range(len(det)):
            j = int(overlap[i].argmax())
            if det.kind[i] == WEAK or overlap[i, j] < MATCH_IOU or _area(det.xyxy[i]) < PARTIAL * _area(pred[j]):
                return False
            overlap[:, j] = 0  # one candidate per face
        return True

    def _predict(self, t: _Track, f: int) -> np.ndarray:
        """Where the track's face is in frame f (after its last box), by its recent motion. Behind another face:
        on the line through its last boxes of full size clear of other faces (the ones it gave while going behind
        were cut), up to ``lookback`` frames after its last detection."""
        if t.occluded:
            g = min(f, t.last_hit + self.lookback)
            box = t.around(_line(t.whole, g))  # on the line, at the size it was seen whole
            if t.last_hit > t.whole[-1][0]:  # found again, not yet whole: also where it was found, moving on
                box = _hull(box, t.box + _fit(t.whole)[0] * (g - t.last_hit))
            return box
        fit = _fit(t.last)
        return t.box if fit is None else t.box + fit[0] * (f - t.last_hit)

    def _step(self, f: int, det: Detections) -> None:
        boxes = self.pending.setdefault(f, [])
        look = self.looks
        refresh = f % self.eyes_every == 0
        bands = eye_band(det.landmarks)
        old = self.tracks
        matched: set[int] = set()
        born: list[_Track] = []
        pred = np.stack([self._predict(t, f) for t in old]) if old else np.zeros((0, 4), np.float32)
        overlap = iou(det.xyxy, pred) if len(det) and old else None
        if overlap is not None:  # a track continues only with a detection of its own class
            overlap[det.class_id[:, None] != np.array([t.cls for t in old])[None]] = 0
        weak = det.kind == WEAK
        heads = _heads(det.xyxy)
        # sure detections claim tracks first, then weak ones take what is left; then a face that was behind
        # another, coming out where its motion says, takes its track back
        order = [*np.flatnonzero(~weak), *np.flatnonzero(weak)]
        claim = {}
        for i in order:
            j = -1
            if overlap is not None:
                cand = overlap[i].copy()
                cand[list(matched)] = 0
                j = int(cand.argmax())
                if cand[j] < MATCH_IOU:
                    j = -1
            claim[i] = j
            matched |= {j} - {-1}
        if any(t.occluded for t in old):  # only a track behind another face can be taken back
            for i in order:
                if claim[i] < 0:
                    claim[i] = self._reappears(f, det.xyxy[i], int(det.class_id[i]), old, pred, matched,
                                               det.xyxy[[k for k in order if claim[k] >= 0]])
                    matched |= {claim[i]} - {-1}
        for i in order:
            box, j = det.xyxy[i], claim[i]
            others = ~weak
            others[i] = False  # the other faces detected surely here
            if j < 0 and weak[i]:  # never a box on its own; a track born later may link it
                self.weak.setdefault(f, []).append((box, bands[i], float(det.score[i]), int(det.class_id[i])))
                continue
            back, other = False, None
            if j < 0:  # a new face
                t = _Track(box, _relative(bands[i], box), float(det.score[i]), f, f, hit_look=look, id=self.next_id,
                           cls=int(det.class_id[i]))
                self.next_id += 1
                self._link_back(t, f)
                t.see(f, box)
                if _covered(box, heads[others]) == 0:
                    t.whole.append((f, box))
                born.append(t)
                self.young.append(t)
            else:
                t = old[j]
                seen = t.last[-1]  # (frame, box) of its detection before this one
                back = t.occluded and f - t.last_hit > 1  # found again after it went behind another face
                fresh = f - t.last_hit <= self.lookback    # ... while it was held along its motion
                t.box, t.score, t.last_hit, t.hit_look = box, float(det.score[i]), f, look
                t.see(f, box)
                if refresh or f - t.eyes_at >= self.eyes_every:
                    t.eyes_rel, t.eyes_at = _relative(bands[i], box), f
                t.sure = not weak[i]
                whole = t.sure and t.whole_size(box)
                if whole and _covered(box, heads[others]) == 0:  # its motion, from faces no other head may cut
                    t.whole.append((f, box))
                # part of the face hidden: the rest kept covered where its motion says (coming out from behind
                # another face: as it was held, until it is seen whole); its eyes both where the detector saw them
                # and where the motion says
                other = _grown(pred[j], HOLD_GROWTH * self.ttl) if t.occluded and fresh and not whole else \
                    pred[j] if _area(box) < PARTIAL * _area(pred[j]) else None
                t.occluded &= not whole
                if other is not None:
                    eyes = _hull(_absolute(t.eyes_rel, box), _absolute(t.eyes_rel, other))
                    box = _hull(box, other)
                    t.sure = False
            if other is None:
                eyes = _absolute(t.eyes_rel, box)
            self._between(t, f, box, eyes)
            if back:  # the frames it was behind the other face are filled along its way
                self._refill(t, seen, f)
            boxes.append(t.region(box, eyes, WEAK if weak[i] else HIT))
        alive = born
        for j, t in enumerate(old):
            if j in matched:
                alive.append(t)
                continue
            if self.ttl and look - t.hit_look <= self.ttl and t.measured() and \
                    _covered(pred[j], heads[~weak]) >= HIDDEN_BY:
                t.occluded = True  # it went where another face is, in front of it or behind it, on a measured way
            at = self._predict(t, f) if t.occluded else t.box
            if self.ttl and _covered(at, det.xyxy[~weak]) >= HIDDEN_BY:
                t.hidden_look = look  # partly behind another face: the detector loses it, its eyes may show
            if look - max(t.hit_look, t.hidden_look) <= self.ttl or t.occluded and f - t.last_hit <= self.lookback:
                # held where the motion says and where it was last seen (it may have stopped), growing; behind
                # another face for longer than ttl: where its measured motion puts it (up to lookback frames, and on
                # while that stays under the face in front), or, its motion not known, where it was last seen while
                # a face covers it
                k = HOLD_GROWTH * min(f - t.last_hit, self.ttl)
                held = _grown(at, k)
                if look - t.hit_look <= self.ttl:
                    held = _hull(held, _hull(_grown(t.box, k), _grown(pred[j], k)))
                eyes = _absolute(t.eyes_rel, held)
                self._between(t, f, held, eyes)
                boxes.append(t.region(held, eyes, HELD))
                alive.append(t)
            else:
                self._hold_over(t, f)
        self.tracks = alive
        self.looks, self.last_look = look + 1, f

    def _between(self, t: _Track, f: int, box: np.ndarray, eyes: np.ndarray) -> None:
        """Track t has ``box`` in frame f, looked at: the frames since the last look, not looked at, get the
        boxes (and eye bands) on the straight line from its box there, grown by a share of the motion."""
        last, t.out = t.out, (f, box, eyes)
        if last is None or last[0] != self.last_look or f - last[0] < 2:
            return
        p, box0, eyes0 = last
        grow = BETWEEN_MARGIN * np.abs(box - box0).max(axis=None)
        pad = np.array([-grow, -grow, grow, grow], np.float32)
        for g in range(max(p + 1, self.next_final), f):  # (frames made final early are out already)
            a = (g - p) / (f - p)
            self.pending.setdefault(g, []).append(t.region(((1 - a) * box0 + a * box + pad).astype(np.float32),
                                                           ((1 - a) * eyes0 + a * eyes + pad).astype(np.float32), HELD))

    def _reappears(self, f: int, box: np.ndarray, cls: int, old: list[_Track], pred: np.ndarray, matched: set[int],
                   taken: np.ndarray) -> int:
        """The track behind another face that a detection in frame f matched to no track continues, or -1: one of
        its class, unmatched, with the detection's centre near where it is held or where its motion puts it, of a
        like width (the face may still be half out of view), the detection not mostly inside one that continues
        another track (a second box on a face found here)."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        w = box[2] - box[0]
        best, near = -1, np.inf
        if _covered(box, taken) >= 0.5:  # a second box on a face found here
            return best
        for j, t in enumerate(old):
            if j in matched or not t.occluded or t.cls != cls:
                continue
            if not REAPPEAR_WIDTH[0] <= w / t.size()[0] <= REAPPEAR_WIDTH[1]:
                continue
            # where it is held, and where its motion puts it now (its hold stops lookback frames on)
            for p in (pred[j], t.around(_line(t.whole, f))):
                g = _grown(p, REAPPEAR_NEAR)
                d = np.hypot(cx - (p[0] + p[2]) / 2, cy - (p[1] + p[3]) / 2)
                if g[0] <= cx <= g[2] and g[1] <= cy <= g[3] and d < near:
                    best, near = j, d
        return best

    def _refill(self, t: _Track, seen: tuple[int, np.ndarray], f: int) -> None:
        """Track t, behind another face since its detection ``seen`` (frame p, box), is found again in frame f: the
        frames between that are not yet handed out get their box on the straight line between the two (grown by a
        share of the face's size), not the hold along its motion before it went behind. A detection of a face half
        hidden is cut and may sit off its centre: each end is the whole face around the detection and where the
        face's measured motion puts it."""
        p, box0 = seen
        ends = [_hull(t.around(b), t.around(_line(t.whole, g))) for g, b in ((p, box0), (f, t.box))]
        pad = REFILL_MARGIN * float(t.size().max())
        pad = np.array([-pad, -pad, pad, pad], np.float32)
        for g in range(max(p + 1, f - self.lookback, self.next_final), f):  # any batch size: the same frames
            a = (g - p) / (f - p)
            box = ((1 - a) * ends[0] + a * ends[1] + pad).astype(np.float32)
            self.pending[g] = [item for item in self.pending.get(g, []) if item[4] != t.id] + \
                [t.region(box, _absolute(t.eyes_rel, box), HELD)]

    def _hold_over(self, t: _Track, end: int) -> None:
        """Track t had a box at the last look and has none from the next look (or the end of the stream) at
        ``end``: the frames between, not looked at, hold it along its motion, growing as a hold does."""
        if t.out is None or t.out[0] != self.last_look:
            return
        p, box0, _ = t.out
        for g in range(max(p + 1, self.next_final), end):
            k = HOLD_GROWTH * min(g - t.last_hit, max(self.ttl, 1))
            held = _hull(_grown(box0, k), _grown(self._predict(t, g), k))
            self.pending.setdefault(g, []).append(t.region(held, _absolute(t.eyes_rel, held), HELD))

    def _link_back(self, t: _Track, f: int) -> None:
        """A new track claims the unclaimed weak candidates it continues, frame by frame backwards."""
        box, gap, missed, chain = t.box, 0, 0, []
        for g in range(f - 1, max(self.next_final, f - self.lookback) - 1, -1):
            if g in self.unseen:  # not looked at: no candidate, no miss
                gap += 1
                continue
            cands = [c for c in self.weak.get(g, []) if c[3] == t.cls]
            overlap = iou(box[None], np.stack([c[0] for c in cands]))[0] if cands else np.zeros(1)
            best = int(overlap.argmax())
            if overlap[best] >= MATCH_IOU:
                hull = _hull(box, cands[best][0])
                for k in range(g + 1, g + 1 + gap):  # frames the chain skipped: both neighbours' hull
                    self.pending.setdefault(k, []).append(t.region(hull, _absolute(t.eyes_rel, hull), FILLED))
                box, band, score, _ = taken = cands[best]
                self.weak[g] = [c for c in self.weak[g] if c is not taken]
                self.pending.setdefault(g, []).append(t.region(box, band, WEAK, score))
                chain.append((g, box))
                gap = missed = 0
            else:
                gap += 1
                missed += 1
                if missed > LINK_GAP:
                    break
        for g, b in reversed(chain):
            t.see(g, b)
        t.weak_start = bool(chain)

    def _fill(self, t: _Track, g: int) -> np.ndarray | None:
        """The back-fill box of track t in frame g, before its first box; None where there is none."""
        f0, b0 = t.first[0]
        d = f0 - g
        if d > self.lookback:
            return None
        # only what was seen by frame g + lookback, when g is handed out with any batch size
        fit = _fit([(f, b) for f, b in t.first if f <= g + self.lookback])
        # near: within ttl, or in the frames not looked at just before the first box (the face may be there)
        near = d <= self.ttl or all(k in self.unseen for k in range(g, f0))
        box = b0 if near else None
        if fit is not None and (near or d <= 2 * fit[1]):
            ext = b0 - fit[0] * d
            # past ttl only where the face was less findable: smaller, or found weakly at first (dark,
            # turned, small); a face found at once at the same size popped in and was not there
            smaller = ext[2] - ext[0] < SMALLER * (b0[2] - b0[0])
            # frames are handed out in order: once one was filled past ttl, the later ones (nearer the first
            # box) are too, even where a fit over more boxes no longer says "smaller" (no gap in the cover)
            if (near or smaller or t.weak_start or t.filled_back) and \
                    min(ext[2] - ext[0], ext[3] - ext[1]) >= MIN_FILL:
                ext = _grown(ext, FILL_GROWTH * d)
                box = ext if box is None else _hull(box, ext)
                t.filled_back |= d > self.ttl
        return box

    def _pop(self, upto: int) -> list[Regions]:
        out = []
        while self.next_final < upto:
            g = self.next_final
            items = self.pending.pop(g, [])
            self.weak.pop(g, None)
            for t in self.young:
                if g < t.first[0][0]:
                    box = self._fill(t, g)
                    if box is not None:
                        items.append(t.region(box, _absolute(t.eyes_rel, box), FILLED))
            self.next_final += 1
            self.unseen.discard(g)
            self.young = [t for t in self.young if t.first[0][0] > self.next_final]
            if not items:
                out.append(Regions.empty())
                continue
            box, eyes, score, kind, track, cls = zip(*items)
            out.append(Regions(np.stack(box).astype(np.float32), np.asarray(score, np.float32),
                               np.asarray(kind, np.uint8), np.asarray(track, np.int32),
                               np.stack(eyes).astype(np.float32), np.asarray(cls, np.uint8)))
        return out
