"""The two small box types the stages pass along (after supervision's ``Detections``): ``Detections``, what the
detector found in a frame, and ``Regions``, what the tracker decided is to be covered there."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# why a box is there: detected, held after a hit, back-filled before one, and a weak candidate (a score
# between the low threshold and the threshold: the detector flags it, the tracker keeps it only on a track)
HIT, HELD, FILLED, WEAK = 0, 1, 2, 3
KIND_NAMES = {HIT: "hit", HELD: "held", FILLED: "filled", WEAK: "weak"}   # as the --json file writes them
# what a box is (``class_id`` indexes this): what the models find (Model.finds); each is redacted alike
CLASSES = ("face",)


def _check(obj, shapes: dict) -> None:
    """Every array one row per box, every class known: a stage cannot hand the next one a mismatched set."""
    n = len(obj.xyxy)
    for name, (a, shape) in shapes.items():
        if np.shape(a) != shape:
            raise ValueError(f"{type(obj).__name__}.{name} must be {shape} for {n} boxes, not {np.shape(a)}")
    if n and not (0 <= int(np.min(obj.class_id)) and int(np.max(obj.class_id)) < len(CLASSES)):
        raise ValueError(f"{type(obj).__name__}.class_id must index CLASSES {CLASSES}, not {np.unique(obj.class_id)}")


@dataclass(frozen=True)
class Detections:
    """What the detector found in one frame, in that frame's pixel coordinates (float32, x1 y1 x2 y2): faces
    (or other ``CLASSES``), sure (``HIT``) or ``WEAK`` candidates. Immutable and checked when made."""

    xyxy: np.ndarray                                   # (N, 4) boxes, as detected
    score: np.ndarray                                  # (N,)
    landmarks: np.ndarray                              # (N, 5, 2): eyes, nose, mouth corners
    kind: np.ndarray = field(default=None)             # (N,) HIT / WEAK
    class_id: np.ndarray = field(default=None)         # (N,) index into CLASSES (default: all faces)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        for name, dtype in (("kind", np.uint8), ("class_id", np.uint8)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(n, dtype))
        _check(self, {"xyxy": (self.xyxy, (n, 4)), "score": (self.score, (n,)),
                      "landmarks": (self.landmarks, (n, 5, 2)), "kind": (self.kind, (n,)),
                      "class_id": (self.class_id, (n,))})

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


@dataclass(frozen=True)
class Regions:
    """What is to be covered in one frame, as the tracker decided (or a review replays): a box per face followed,
    detected (``HIT``), ``WEAK`` but on a track, ``HELD`` after its last detection or ``FILLED`` before its
    first, with its eye band and the number of the track it is on, and whether it is left visible (a consenting
    person's, ``consent.py``; every other face is covered). Immutable and checked when made."""

    xyxy: np.ndarray                                   # (N, 4) face boxes
    score: np.ndarray                                  # (N,) the track's last score
    kind: np.ndarray                                   # (N,) HIT / HELD / FILLED / WEAK
    track: np.ndarray                                  # (N,) the tracker's number for each face (int32)
    eyes: np.ndarray                                   # (N, 4) eye bands
    class_id: np.ndarray = field(default=None)         # (N,) index into CLASSES (default: all faces)
    kept: np.ndarray = field(default=None)             # (N,) bool: left visible (default: none, all covered)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.class_id is None:
            object.__setattr__(self, "class_id", np.zeros(n, np.uint8))
        if self.kept is None:
            object.__setattr__(self, "kept", np.zeros(n, bool))
        _check(self, {"xyxy": (self.xyxy, (n, 4)), "score": (self.score, (n,)), "kind": (self.kind, (n,)),
                      "track": (self.track, (n,)), "eyes": (self.eyes, (n, 4)), "class_id": (self.class_id, (n,)),
                      "kept": (self.kept, (n,))})

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls) -> "Regions":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint8),
                   np.zeros(0, np.int32), np.zeros((0, 4), np.float32))

    def subset(self, mask: np.ndarray) -> "Regions":
        return Regions(self.xyxy[mask], self.score[mask], self.kind[mask], self.track[mask], self.eyes[mask],
                       self.class_id[mask], self.kept[mask])

    def to_json(self) -> list[dict]:
        out = []
        for i in range(len(self)):
            item = {"box": [round(float(v), 1) for v in self.xyxy[i]], "score": round(float(self.score[i]), 3),
                    "kind": KIND_NAMES[int(self.kind[i])], "eyes": [round(float(v), 1) for v in self.eyes[i]],
                    "track": int(self.track[i])}
            if self.class_id[i]:  # faces, the only class of the packaged model, are not named on every box
                item["class"] = CLASSES[int(self.class_id[i])]
            if self.kept[i]:
                item["kept"] = True
            out.append(item)
        return out


def grow(xyxy: np.ndarray, margin_px: float, margin_rel: float, width: int, height: int) -> np.ndarray:
    """Grow boxes by a pixel and a relative margin per side and clip them to the frame."""
    if len(xyxy) == 0:
        return np.zeros((0, 4), np.float32)
    b = np.asarray(xyxy, np.float32)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dx, dy = margin_px + margin_rel * w, margin_px + margin_rel * h
    out = np.stack([b[:, 0] - dx, b[:, 1] - dy, b[:, 2] + dx, b[:, 3] + dy], axis=1)
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) boxes -> (N, M)."""
    a = np.asarray(a, np.float32)[:, None]
    b = np.asarray(b, np.float32)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-6)


def nms(xyxy: np.ndarray, score: np.ndarray, thresh: float = 0.3, landmarks: np.ndarray | None = None,
        same_eyes: float = 0.6, always: float = 0.5) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    With ``landmarks``, a box overlapping a kept one by ``thresh`` <= IoU < ``always`` is a
    duplicate only if its eyes are where the kept box's are (midpoints closer than ``same_eyes``
    times the kept face's eye distance): a face half hidden behind another overlaps it at
    IoU 0.3-0.4 but has its own eyes, and plain IoU suppression deleted it.
    """
    order = np.argsort(-score, kind="stable")
    mid = None if landmarks is None else (landmarks[:, 0] + landmarks[:, 1]) / 2
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        if len(order) == 1:
            break
        rest = order[1:]
        overlap = iou(xyxy[i:i + 1], xyxy[rest])[0]
        dup = overlap >= thresh
        if mid is not None:
            d = max(float(np.linalg.norm(landmarks[i, 0] - landmarks[i, 1])), 4.0)
            same = np.linalg.norm(mid[rest] - mid[i], axis=1) < same_eyes * d
            dup &= same | (overlap >= always)
        order = rest[~dup]
    return np.asarray(keep, np.int64)


def eye_band(landmarks: np.ndarray) -> np.ndarray:
    """Axis-aligned band over both eyes, sized from the inter-ocular distance d.

    The band spans 0.6 d beyond each eye horizontally and 0.45 d above and below, so that it
    still covers both eyes when the head is turned or tilted.
    """
    if len(landmarks) == 0:
        return np.zeros((0, 4), np.float32)
    le, re = landmarks[:, 0], landmarks[:, 1]
    d = np.maximum(np.linalg.norm(le - re, axis=1), 4.0)
    x1 = np.minimum(le[:, 0], re[:, 0]) - 0.6 * d
    x2 = np.maximum(le[:, 0], re[:, 0]) + 0.6 * d
    y1 = np.minimum(le[:, 1], re[:, 1]) - 0.45 * d
    y2 = np.maximum(le[:, 1], re[:, 1]) + 0.45 * d
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
