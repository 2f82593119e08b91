"""Which frames the detector looks at (``detect_every``); the tracker fills the others from both sides.

A fixed N looks at the frames whose index in the stream is a multiple of N, so a segment of a file looks
at the frames a whole run does. ``"auto"`` skips only frames where a look would find nothing the looks on
either side do not already say, batch by batch:

- the plan, from the tracker as it was before the batch: every frame while the last look left anything
  unsure (a candidate on no face tracked; a face missed, partly hidden, found only weakly, or whose motion
  is not known yet); else looks as far apart as the fastest face allows (it may move ``MOVE`` of its width
  from one look to the next), at most ``AUTO_MAX_EVERY``, counted back from the batch's last frame, which is
  always looked at (so every frame skipped has a look after it in its own batch);
- the check: a look that finds anything the faces tracked do not predict (a candidate on no face, a face
  missed, partly hidden or found only weakly) has the detector look at every other frame of its batch too,
  in a second call.

So the batches where a face comes in, fades, is hidden, turns or leaves are looked at in every frame, as
with ``detect_every=1``, and back-fill, links to weak candidates and holds work from the same detections;
the frames skipped are those of batches where every face was where its motion said, found surely. A
scene cut is such a surprise too. A detector on a GPU takes each call's frames as one batch.
"""
from __future__ import annotations

import numpy as np

from .config import AUTO_MAX_EVERY
from .detect.detections import Detections
from .track import Tracker

MOVE = 0.25     # share of a face's width it may move from one look to the next


class Cadence:
    """Picks, batch by batch, the frames to detect on."""

    def __init__(self, every: int | str) -> None:
        self.every = every

    def pick(self, frames, first: int, tracker: Tracker) -> list[int]:
        """The indices into ``frames`` (a batch as stored; the first is frame ``first`` of the stream)
        of the frames to detect on first."""
        if self.every != "auto":
            return [i for i in range(len(frames)) if (first + i) % self.every == 0]
        return list(range(len(frames) - 1, -1, -self.gap(tracker)))[::-1]

    def gap(self, tracker: Tracker) -> int:
        """``auto``: frames from one look to the next, as the tracker stands now (1 while anything is unsure).
        The ``Anonymizer`` holds frames given fewer at a time (a live stream's one) until it has this many."""
        if tracker.unsure():
            return 1
        return min([AUTO_MAX_EVERY, *(_gap(box, v) for box, v in tracker.motion())])

    def more(self, dets: list[Detections | None], first: int, tracker: Tracker) -> list[int]:
        """After the first call: the indices of the frames to detect on as well (``dets``: the detections of
        the batch's frames, None where not looked at)."""
        if self.every != "auto" or all(d is not None for d in dets):
            return []
        if all(d is None or tracker.expected(first + i, d) for i, d in enumerate(dets)):
            return []
        return [i for i, d in enumerate(dets) if d is None]


def _gap(box: np.ndarray, velocity: np.ndarray | None) -> int:
    """Frames from one look to the next that keep this face's motion under MOVE of its width."""
    if velocity is None:
        return 1
    speed = float(np.abs(velocity).max()) / max(float(box[2] - box[0]), 1.0)
    return int(np.clip(MOVE / max(speed, 1e-6), 1, AUTO_MAX_EVERY))
