"""Which frames the detector looks at (``detect_every``); the tracker fills the others from both sides.

A fixed N looks at the frames whose index in the stream is a multiple of N, so a segment of a file looks
at the frames a whole run does. ``"auto"`` looks at every frame while something could change faster than
the frames between two looks can follow, and otherwise at least every ``AUTO_MAX_EVERY``-th frame:

- a face whose motion is not known yet (too few boxes to fit), or that moves fast: two looks may not be
  more than ``MOVE`` of its width of motion apart;
- a candidate the detector is not sure of yet, on no face being tracked (a face coming in, fading in,
  growing: the frames where it becomes sure are looked at, as with every frame);
- a scene cut: the colour histogram of a thumbnail moved by more than ``CUT`` since the last look.

A face that comes in between two looks is found at the next one and back-filled from there over the frames
not looked at (track.py), so a look at every frame is for the faces the detector finds only now and then.
The decisions for a batch use the tracker as it was before the batch (a detector on a GPU takes the
frames it looks at in one call).
"""
from __future__ import annotations

import numpy as np

from .config import AUTO_MAX_EVERY
from .cuda import array_module
from .track import Tracker

MOVE = 0.25     # share of a face's width it may move from one look to the next
CUT = 0.5       # L1 distance of two thumbnails' colour histograms (0-2) that is a scene cut
CELLS = 160     # thumbnail cells across the long side
BINS = 16       # histogram bins per colour channel


class Cadence:
    """Picks, batch by batch, the frames to detect on."""

    def __init__(self, every: int | str) -> None:
        self.every = every
        self.last = -1                            # the last frame looked at
        self.hist: np.ndarray | None = None       # its thumbnail's colour histogram

    def pick(self, frames, first: int, tracker: Tracker) -> list[int]:
        """The indices into ``frames`` (N, H, W, 3, as stored; the first is frame ``first`` of the stream)
        of the frames to detect on."""
        if self.every != "auto":
            return [i for i in range(len(frames)) if (first + i) % self.every == 0]
        hists = [_histogram(t) for t in self._thumbs(frames)]
        faces = tracker.motion()
        gap = 1 if tracker.unsure() else min([AUTO_MAX_EVERY, *(_gap(box, v) for box, v in faces)])
        out = []
        for i, hist in enumerate(hists):
            f = first + i
            if self.hist is None or f - self.last >= gap or np.abs(hist - self.hist).sum() > CUT:
                out.append(i)
                self.last, self.hist = f, hist
        return out

    def _thumbs(self, frames) -> np.ndarray:
        """(N, h, w, 3) float32 cell means, 0-255, on the host (a few KB a frame)."""
        xp = array_module(frames)
        n, height, width = frames.shape[:3]
        c = max(2, round(max(height, width) / CELLS))
        h, w = height // c, width // c
        scale = 255.0 / 65535.0 if frames.dtype == np.uint16 else 1.0
        if xp is np:
            import cv2
            small = np.stack([cv2.resize(np.ascontiguousarray(f[:h * c, :w * c]), (w, h),
                                         interpolation=cv2.INTER_AREA) for f in frames])
            return small.astype(np.float32) * scale
        cells = frames[:, :h * c, :w * c].reshape(n, h, c, w, c, 3).astype(xp.float32).mean(axis=(2, 4))
        return xp.asnumpy(cells) * scale


def _histogram(thumb: np.ndarray) -> np.ndarray:
    """Per-channel colour histogram of a thumbnail, each channel's summing to 1 (a cut moves it, motion hardly)."""
    bins = np.minimum(thumb * (BINS / 256.0), BINS - 1).astype(np.int64)
    return np.concatenate([np.bincount(bins[..., k].ravel(), minlength=BINS) for k in range(3)]) / bins[..., 0].size


def _gap(box: np.ndarray, velocity: np.ndarray | None) -> int:
    """Frames from one look to the next that keep this face's motion under MOVE of its width."""
    if velocity is None:
        return 1
    speed = float(np.abs(velocity).max()) / max(float(box[2] - box[0]), 1.0)
    return int(np.clip(MOVE / max(speed, 1e-6), 1, AUTO_MAX_EVERY))
