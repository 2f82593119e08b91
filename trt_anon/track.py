"""Temporal safety: hold boxes after the last hit, back-fill before the first, carry eyes.

A frame's boxes are final only once ``ttl`` later frames have been seen, because a face first
found in frame f is back-filled into frames f-ttl..f-1. The pipeline therefore writes each
frame ``ttl`` frames late; ``push`` returns the frames that became final.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detect.detections import FILLED, HELD, HIT, Detections, eye_band, iou

MATCH_IOU = 0.2
HOLD_GROWTH = 0.05  # a held box grows by this fraction of its size per side per missed frame
HIDDEN_BY = 0.25    # a missed face this much under a detected one may be behind it: held while so


@dataclass
class _Track:
    box: np.ndarray        # last face box
    eyes_rel: np.ndarray   # eye band relative to the face box (fractions of w, h)
    score: float
    last_hit: int          # frame index of the last detection
    eyes_at: int           # frame index where the eye band was last derived from landmarks
    hidden_at: int = -1    # last frame in which a detected face covered this missed one


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
    """Streams per-frame detections in, final per-frame boxes out (``ttl`` frames later)."""

    def __init__(self, ttl: int = 5, eyes_every: int = 4) -> None:
        self.ttl, self.eyes_every = ttl, eyes_every
        self.tracks: list[_Track] = []
        self.pending: dict[int, list[tuple]] = {}  # frame -> [(box, eyes, score, kind)]
        self.next_frame = 0   # next frame index to push
        self.next_final = 0   # next frame index to hand out

    def push(self, dets: list[Detections]) -> list[Detections]:
        """Add the detections of the next frames; return the frames whose boxes are now final."""
        for d in dets:
            self._step(self.next_frame, d)
            self.next_frame += 1
        return self._pop(self.next_frame - self.ttl)

    def flush(self) -> list[Detections]:
        """End of stream: every remaining frame is final."""
        return self._pop(self.next_frame)

    def _step(self, f: int, det: Detections) -> None:
        boxes = self.pending.setdefault(f, [])
        refresh = f % self.eyes_every == 0
        bands = eye_band(det.landmarks)
        old = self.tracks
        matched: set[int] = set()
        born: list[_Track] = []
        overlap = iou(det.xyxy, np.stack([t.box for t in old])) if len(det) and old else None
        for i in range(len(det)):
            box = det.xyxy[i]
            j = -1
            if overlap is not None:
                cand = overlap[i].copy()
                cand[list(matched)] = 0
                j = int(cand.argmax())
                if cand[j] < MATCH_IOU:
                    j = -1
            if j < 0:  # a new face: back-fill it into the frames not yet written
                t = _Track(box, _relative(bands[i], box), float(det.score[i]), f, f)
                born.append(t)
                for g in range(max(f - self.ttl, self.next_final), f):
                    self.pending.setdefault(g, []).append((box, bands[i], t.score, FILLED))
            else:
                t = old[j]
                matched.add(j)
                t.box, t.score, t.last_hit = box, float(det.score[i]), f
                if refresh or f - t.eyes_at >= self.eyes_every:
                    t.eyes_rel, t.eyes_at = _relative(bands[i], box), f
            boxes.append((box, _absolute(t.eyes_rel, box), t.score, HIT))
        alive = born
        for j, t in enumerate(old):
            if j in matched:
                alive.append(t)
                continue
            if self.ttl and _covered(t.box, det.xyxy) >= HIDDEN_BY:
                t.hidden_at = f  # partly behind another face: the detector loses it, its eyes may show
            if f - max(t.last_hit, t.hidden_at) <= self.ttl:
                k = HOLD_GROWTH * min(f - t.last_hit, self.ttl)
                w, h = t.box[2] - t.box[0], t.box[3] - t.box[1]
                held = t.box + np.array([-k * w, -k * h, k * w, k * h], np.float32)
                boxes.append((held, _absolute(t.eyes_rel, held), t.score, HELD))
                alive.append(t)
        self.tracks = alive

    def _pop(self, upto: int) -> list[Detections]:
        out = []
        while self.next_final < upto:
            items = self.pending.pop(self.next_final, [])
            self.next_final += 1
            if not items:
                out.append(Detections.empty())
                continue
            box, eyes, score, kind = zip(*items)
            out.append(Detections(np.stack(box).astype(np.float32), np.asarray(score, np.float32),
                                  np.zeros((len(items), 5, 2), np.float32), np.stack(eyes).astype(np.float32),
                                  np.asarray(kind, np.uint8)))
        return out
