"""Per-frame numbers for the review page, collected while the video is written.

A few dozen bytes per frame in flat arrays (an hour at 30 fps with 3 faces is about 8 MB), so the
timeline covers the whole video while memory stays independent of the picture size; the frames
shown as thumbnails are chosen from these numbers after the run and decoded again from the file.
The run's faces also go, as a decisions file (``report.BoxLog``, slim), gzip-compressed into a temporary
file: the page embeds it, so that its editor can save decisions without a ``--json`` file.
"""
from __future__ import annotations

import gzip
import io
import math
import tempfile
from array import array
from dataclasses import dataclass, field

import numpy as np

from ..detect.detections import FILLED, HELD, HIT, Regions, iou
from ..report import BoxLog, Report

# Thumbnails per reason; the page shows at most their sum (a frame chosen twice shows once).
PICKS = {"even": 16, "start": 8, "end": 8, "low": 6, "most": 4, "large": 4}
MAX_THUMBS = sum(PICKS.values())
TRACK_IOU = 0.1   # a box overlapping none of the previous frame's boxes by this much starts a track
SHOT_TRACKS = 60  # tracks shown with pictures (the longest ones); past that a track's card has none


@dataclass
class Shot:
    """A track's face at one of its frames, cropped from the output (and the input) for its card."""

    label: str                 # first, largest, last (one or more of them)
    frame: int
    box: list[float]           # the face box there, stored-frame pixels
    output_jpeg: bytes | None = None
    input_jpeg: bytes | None = None


@dataclass
class Card:
    """One followed face: its line of the document's ``tracks`` and the shots to show."""

    track: dict
    shots: list[Shot] = field(default_factory=list)
    faces: list[tuple[int, list[float]]] = field(default_factory=list)   # (frame, box) of its first, largest and
                                                                         # last detected face: who it is


class FrameStats:
    """What the pipeline hands over per written frame: its pts, the tracker's boxes, the redacted rectangles.
    ``keep`` and ``added``: a decisions file's tracks kept visible and regions, carried into the document."""

    def __init__(self, keep=(), added: list | None = None) -> None:
        self.pts = array("q")
        self.counts = {HIT: array("H"), HELD: array("H"), FILLED: array("H")}
        self.low = array("f")          # lowest detection (hit) score in the frame, NaN when none
        self.largest = array("f")      # longest side of the largest redacted box, pixels (0: none)
        self.offsets = array("I", [0])  # frame i's boxes are boxes[4*offsets[i]:4*offsets[i+1]]
        self.boxes = array("f")
        self.kinds = array("B")
        self.starts = array("I")       # frames where a redacted box appears (no overlap with the previous frame)
        self.ends = array("I")         # last frames of a box that the next frame no longer has
        self._prev = np.zeros((0, 4), np.float32)
        self.shots: dict[int, dict[str, tuple[int, list[float]]]] = {}   # track -> label -> (frame, box)
        self.hits: dict[int, dict[str, tuple[int, list[float]]]] = {}    # the same, of its detected faces only
        self._raw = tempfile.TemporaryFile()
        packed = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)   # 9: as small, slower
        self._text = io.TextIOWrapper(packed, encoding="utf-8")
        self.log = BoxLog(self._text, keep=keep, added=added, slim=True)

    def __len__(self) -> int:
        return len(self.pts)

    def add(self, pts: int, det: Regions, redacted: np.ndarray) -> None:
        """Record one frame; ``redacted`` are the rectangles actually mosaicked (margins added)."""
        i = len(self.pts)
        self.pts.append(int(pts))
        kind = np.asarray(det.kind, np.uint8)
        for k, a in self.counts.items():
            a.append(int((kind == k).sum()))
        hits = np.asarray(det.score)[kind == HIT]
        self.low.append(float(hits.min()) if len(hits) else math.nan)
        b = np.asarray(redacted, np.float32).reshape(-1, 4)
        sides = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) if len(b) else np.zeros(0)
        self.largest.append(float(sides.max()) if len(b) else 0.0)
        self.boxes.extend(b.ravel().tolist())
        covered = kind[~np.asarray(det.kept, bool)]   # the faces left visible (--keep-face) have no rectangle
        self.kinds.extend((covered if len(covered) == len(b) else np.full(len(b), HIT, np.uint8)).tolist())
        self.offsets.append(self.offsets[-1] + len(b))
        new, gone = _unmatched(b, self._prev)
        if new:
            self.starts.append(i)
        if gone and i:
            self.ends.append(i - 1)
        self._prev = b
        self.log.add(i, int(pts), det.to_json(), b)
        for box, t, k in zip(np.asarray(det.xyxy).tolist(), np.asarray(det.track).tolist(), kind.tolist()):
            self._shoot(self.shots, int(t), i, box)
            if k == HIT:
                self._shoot(self.hits, int(t), i, box)

    @staticmethod
    def _shoot(shots: dict, track: int, frame: int, box: list[float]) -> None:
        """Keep the track's first, largest (widest) and last face."""
        if track < 0:
            return
        s = shots.setdefault(track, {"first": (frame, box), "largest": (frame, box)})
        s["last"] = (frame, box)
        if box[2] - box[0] > s["largest"][1][2] - s["largest"][1][0]:
            s["largest"] = (frame, box)

    def close(self, report: Report, audit: dict | None) -> None:
        """The document complete: the tracks, the report and the audit record after the frames."""
        self.log.close(report, audit)
        self._text.close()   # the gzip stream's end; the temporary file stays open

    def document(self) -> bytes:
        """The run's decisions document, gzip-compressed (``close`` first)."""
        self._raw.seek(0)
        return self._raw.read()

    def cards(self, tracks: int = SHOT_TRACKS) -> list[Card]:
        """One card per track, in order of appearance; the ``tracks`` longest ones with up to three shots."""
        shown = set(sorted(self.log.tracks, key=lambda t: -self.log.tracks[t]["frames"])[:tracks])
        out = []
        for t, line in self.log.tracks.items():
            card = Card(line)
            if t in shown:
                at: dict[int, Shot] = {}
                for label, (frame, box) in self.shots[t].items():   # one shot per frame, its labels joined
                    if frame in at:
                        at[frame].label += ", " + label
                    else:
                        at[frame] = Shot(label, frame, box)
                card.shots = [at[f] for f in sorted(at)]
                card.faces = sorted(set((f, tuple(b)) for f, b in self.hits.get(t, {}).values()))
            out.append(card)
        return out

    def frame_boxes(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) redacted rectangles and their (N,) kinds for frame ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return (np.array(self.boxes[4 * a:4 * b], np.float32).reshape(-1, 4),
                np.array(self.kinds[a:b], np.uint8))

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-frame series as NumPy arrays (copies: an array viewing ours would stop it growing)."""
        return {"hit": np.array(self.counts[HIT], np.int32), "held": np.array(self.counts[HELD], np.int32),
                "filled": np.array(self.counts[FILLED], np.int32), "low": np.array(self.low, np.float32),
                "largest": np.array(self.largest, np.float32)}


def _unmatched(cur: np.ndarray, prev: np.ndarray) -> tuple[int, int]:
    """How many boxes of ``cur`` have no partner in ``prev``, and of ``prev`` none in ``cur``: pairs are
    matched one to one, best overlap first, so a box that vanishes next to another still counts as gone."""
    if not len(cur) or not len(prev):
        return len(cur), len(prev)
    ov = iou(cur, prev)
    pairs = 0
    while True:
        j, k = np.unravel_index(np.argmax(ov), ov.shape)
        if ov[j, k] < TRACK_IOU:
            break
        pairs += 1
        ov[j, :], ov[:, k] = -1, -1
    return len(cur) - pairs, len(prev) - pairs


@dataclass
class Pick:
    """A frame to show, and why (one or more reasons)."""

    frame: int
    reasons: list[str] = field(default_factory=list)   # as the caption says them
    keys: list[str] = field(default_factory=list)      # the PICKS keys, for counting


def _spaced(order: np.ndarray, k: int, gap: int) -> list[int]:
    """The first ``k`` frames of ``order`` (best first) that are at least ``gap`` frames from each other."""
    out: list[int] = []
    for f in order.tolist():
        if all(abs(f - g) >= gap for g in out):
            out.append(f)
            if len(out) == k:
                break
    return out


def _evenly(items, k: int) -> list[int]:
    """``k`` items spread evenly over a chronological list (all of them when there are fewer)."""
    items = list(items)
    if len(items) <= k:
        return items
    return [items[int(j)] for j in np.unique(np.linspace(0, len(items) - 1, k).round().astype(int))]


def choose_frames(stats: FrameStats, picks: dict[str, int] = PICKS) -> list[Pick]:
    """The frames most worth a look, in order: evenly spaced ones plus track starts and ends,
    the lowest detection scores, the most faces and the largest faces (``picks`` says how many of each).

    Frames picked for the same reason are kept apart (1/200 of the video, at least 2 frames), so that
    six low-score frames are not six neighbours of one moment.
    """
    n = len(stats)
    if n == 0:
        return []
    s = stats.arrays()
    gap = max(2, n // 200)
    total = s["hit"] + s["held"] + s["filled"]
    chosen: dict[int, Pick] = {}

    def add(frames, key: str, label) -> None:
        for f in map(int, frames):
            p = chosen.setdefault(f, Pick(f))
            p.reasons.append(label(f) if callable(label) else label)
            p.keys.append(key)

    add(_evenly(range(n), picks["even"]), "even", "evenly spaced")
    add(_evenly(stats.starts, picks["start"]), "start", "a face box appears")
    add(_evenly(stats.ends, picks["end"]), "end", "a face box ends here")
    scored = np.flatnonzero(~np.isnan(s["low"]))
    low = scored[np.argsort(s["low"][scored], kind="stable")]
    add(_spaced(low, picks["low"], gap), "low", lambda f: f"low score {s['low'][f]:.2f}")
    with_faces = np.flatnonzero(total)
    most = with_faces[np.argsort(-total[with_faces], kind="stable")]
    add(_spaced(most, picks["most"], gap), "most", lambda f: f"most faces ({total[f]})")
    large = with_faces[np.argsort(-s["largest"][with_faces], kind="stable")]
    add(_spaced(large, picks["large"], gap), "large",   # the redacted box: the face grown by its margin
        lambda f: f"largest redacted box ({s['largest'][f]:.0f} px: face and margin)")
    return [chosen[f] for f in sorted(chosen)]
