"""Measure ``consent.THRESHOLD``, the embedding distance under which --keep-face takes two faces for one person,
on real faces that packages ship (docs/quality.md, "Keeping consenting people").

Different people: the 100 faces of scikit-image's LFW subset (Labeled Faces in the Wild, 25 x 25 grey crops,
drawn into frames at 96 px as references and at 56 px as faces in a video), every pair but the three of one
person the subset holds three times (George W. Bush: faces 0, 36, 90); and Eileen Collins' and Grace Hopper's
portraits (scikit-image, matplotlib) against each other and every LFW face. Pairs that may be one person
but are not labelled so count as different, which only lowers the threshold. Same person: the Bush pairs, and
both portraits against themselves drawn into a video frame at 48-160 px, mirrored, darker or tilted, JPEG'd.

Every face goes through the path a video's face takes (CenterFace box, crop, dlib's landmarks and embedding).
A reference (an LFW face at 96 px, a portrait) is embedded with its exposure bracket (``consent.EXPOSURES``: its
values times 1.5, clipped) as --keep-face embeds a reference photo, and a face's distance to it is to the
nearest of those; in a pair of LFW faces, either one is taken as the reference (the nearer).
The threshold must be under the closest different pair; the run fails if ``consent.THRESHOLD`` is not.

Partly hidden: each LFW face (and Hopper's) at 96 px with another face drawn over 20 % or 40 % of it from either
side; behind Eileen Collins' face (10, 20, 40 or 60 % of it hidden); in front of hers (hiding 10-60 % of hers:
her face beside it, in its crop); at 56 px beside hers at 128 px, behind or in front (mostly hers in its crop); and
cut by the frame's edge (10, 20 or 40 % of it out, on any side), each against her portrait; and hers so hidden
against her own. --keep-face compares such faces where it sees them (beside another face, a box off its track's
shape, at the frame's edge) for a match only: none of someone else's may come under the threshold either.

    python scripts/consent_threshold.py            # the table for docs/quality.md
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import synth  # noqa: E402  (tests/synth.py: faces drawn from the packaged photos)

from trt_anon import consent  # noqa: E402
from trt_anon.config import Config  # noqa: E402
from trt_anon.detect import select_detector  # noqa: E402

SAME_LFW = (0, 36, 90)   # one person (George W. Bush) three times in the subset: labelled by eye


def _video(faces: list, detector):
    """A 640 x 480 frame of ``faces``, JPEG'd as a video's frame is compressed, and the faces the detector finds."""
    frame, _, _ = next(synth.render(640, 480, faces, 1))
    ok, buf = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 70])
    frame = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return frame, detector(frame[None])[0]


def _embedded(frame: np.ndarray, box, embedder, gains=(1.0,)) -> tuple[np.ndarray, bool]:
    """(embeddings, frontal) of the face in ``box``, as consent.Keeper embeds it: a row per gain (a reference's
    exposure bracket: ``consent.EXPOSURES``; a face in a video: as it is)."""
    crop, cbox = consent.face_crop(frame, box)
    points, shape = embedder.landmarks(crop, cbox)
    return embedder.bracket(crop, shape, gains), consent.frontal(points)


def video_face(source: str, size: float, embedder, detector, gains=(1.0,), **face) -> tuple[np.ndarray | None, bool]:
    """(embeddings, frontal) of ``source`` drawn at ``size`` px into a video frame (``_video``), its best detection
    embedded as consent.Keeper does (a row per gain); (None, False) if not found."""
    frame, found = _video([synth.Face(size, (220, 140), source=source, **face)], detector)
    if not len(found):
        return None, False
    return _embedded(frame, found.xyxy[int(np.argmax(found.score))], embedder, gains)


def hidden_face(source: str, by: str, hidden: float, side: str, embedder, detector, front: bool = False,
                size: float = 96, by_size: float = 96) -> np.ndarray | None:
    """The embedding of ``source`` drawn at ``size`` px with ``by`` (``by_size`` px, in front) hiding ``hidden`` of
    it from ``side``, as ``video_face`` does (``front``: of ``by``, the face in front); None if not found."""
    a = synth.Face(size, (270, 160), source=source)
    b = synth.hide(a, synth.Face(by_size, (270 + (-2.5 if side == "left" else 2.5) * size, 174), source=by,
                                 flip=side == "left"), hidden, 640, 480)
    frame, found = _video([a, b], detector)
    if not len(found):
        return None
    face = b if front else a
    x0, y0, x1, y1 = synth.face_box(face, 0)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    centres = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2
    k = int(np.argmin(np.linalg.norm(centres - centre, axis=1)))
    if np.linalg.norm(centres[k] - centre) > face.size / 2:   # that face not found
        return None
    return _embedded(frame, found.xyxy[k], embedder)[0][0]


def cut_face(source: str, cut: float, side: str, embedder, detector) -> np.ndarray | None:
    """The embedding of ``source`` drawn at 96 px with ``cut`` of its face box past the frame's ``side`` edge
    (left, right, top, bottom), as ``video_face`` does; None if not found."""
    x0, y0, x1, y1 = synth.face_box(synth.Face(96, (0, 0), source=source), 0)
    w, h = x1 - x0, y1 - y0
    x = {"left": -cut * w, "right": 640 - w + cut * w}.get(side, 270)
    y = {"top": -cut * h, "bottom": 480 - h + cut * h}.get(side, 160)
    frame, found = _video([synth.Face(96, (x, y), source=source)], detector)
    if not len(found):
        return None
    return _embedded(frame, found.xyxy[int(np.argmax(found.score))], embedder)[0][0]


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    embedder = consent.Embedder()
    detector = select_detector(Config(backend="cpu"), gpu=False)
    lfw = {}
    for size in (96, 56):   # at 96 px a reference: its exposure bracket
        for k in range(100):
            e, front = video_face(f"lfw:{k}", size, embedder, detector,
                                  gains=consent.EXPOSURES if size == 96 else (1.0,))
            if e is not None:
                lfw[k, size] = (e, front)
    portraits = {}
    for name in ("astronaut", "hopper"):
        img, _, _ = synth.face_source(name)
        found = detector(img[None])[0]
        portraits[name] = _embedded(img, found.xyxy[int(np.argmax(found.score))], embedder, consent.EXPOSURES)[0]

    def dist(ref, v) -> float:
        """A face's distance to a reference (its rows: its exposures), as --keep-face measures it."""
        return consent.Person("", (), np.atleast_2d(ref)).distance(np.atleast_2d(v)[0])

    def pair(a, b) -> float:
        """Two faces, either one the reference (its bracket, where it has one)."""
        return min(dist(a, b), dist(b, a))

    different, same = [], []
    for (i, si), (j, sj) in itertools.combinations(lfw, 2):
        if i == j:
            continue
        p = (pair(lfw[i, si][0], lfw[j, sj][0]), f"LFW {i}@{si} / {j}@{sj}", lfw[i, si][1] and lfw[j, sj][1])
        (same if i in SAME_LFW and j in SAME_LFW else different).append(p)
    for name, e in portraits.items():
        for (k, size), (v, front) in lfw.items():
            different.append((pair(e, v), f"{name} / LFW {k}@{size}", front))
    different.append((pair(portraits["astronaut"], portraits["hopper"]), "astronaut / hopper", True))
    variants = {"": {}, "mirrored": {"flip": True}, "darker": {"gain": 0.6}, "brighter": {"gain": 1.5},
                "tilted 10": {"angle": 10}}
    for name, e in portraits.items():
        for size in (48, 64, 96, 160):
            for label, face in variants.items():
                v, front = video_face(name, size, embedder, detector, **face)
                if v is not None:
                    same.append((dist(e, v), f"{name} @{size} {label}".strip(), front))

    hidden_other, hidden_her = [], []
    her = portraits["astronaut"]
    others = [*(f"lfw:{k}" for k in range(100)), "hopper"]
    for source, share, side in itertools.product(others, (0.2, 0.4), ("left", "right")):
        v = hidden_face(source, "lfw:50" if source == "hopper" else "hopper", share, side, embedder, detector)
        if v is not None:
            hidden_other.append((dist(her, v), f"{source} {share:.0%} hidden from the {side}"))
    by_her, before_her = [], []   # someone else's face behind hers, or in front of hers: hers in its crop
    for source, share, side in itertools.product(others, (0.1, 0.2, 0.4, 0.6), ("left", "right")):
        v = hidden_face(source, "astronaut", share, side, embedder, detector)
        if v is not None:
            by_her.append((dist(her, v), f"{source} {share:.0%} hidden by her from the {side}"))
        v = hidden_face("astronaut", source, share, side, embedder, detector, front=True)
        if v is not None:
            before_her.append((dist(her, v), f"{source} hiding {share:.0%} of her from the {side}"))
    small = []   # a small face (56 px) beside hers at 128 px: mostly hers in its crop
    for source, share, side in itertools.product(others, (0.1, 0.2, 0.4), ("left", "right")):
        v = hidden_face(source, "astronaut", share, side, embedder, detector, size=56, by_size=128)
        if v is not None:
            small.append((dist(her, v), f"{source} at 56 px, {share:.0%} hidden by her at 128 px from the {side}"))
        v = hidden_face("astronaut", source, share, side, embedder, detector, front=True, size=128, by_size=56)
        if v is not None:
            small.append((dist(her, v), f"{source} at 56 px hiding {share:.0%} of her at 128 px from the {side}"))
    cut_other, cut_her = [], []   # faces cut by the frame's edge
    for source, share, side in itertools.product([*others, "astronaut"], (0.1, 0.2, 0.4),
                                                 ("left", "right", "top", "bottom")):
        v = cut_face(source, share, side, embedder, detector)
        if v is not None:
            (cut_her if source == "astronaut" else cut_other).append(
                (dist(her, v), f"{source} {share:.0%} cut by the {side} edge"))
    her_before = []   # hers in front of someone else's: theirs in her crop
    for by, share, side in itertools.product(others, (0.1, 0.2, 0.4), ("left", "right")):
        v = hidden_face("astronaut", by, share, side, embedder, detector)
        if v is not None:
            hidden_her.append((dist(her, v), f"astronaut {share:.0%} hidden by {by} from the {side}"))
        v = hidden_face(by, "astronaut", share, side, embedder, detector, front=True)
        if v is not None:
            her_before.append((dist(her, v), f"astronaut hiding {share:.0%} of {by} from the {side}"))
    hidden_other.sort()
    print(f"partly hidden faces of others against Eileen Collins' portrait: {len(hidden_other)}, closest "
          f"{hidden_other[0][0]:.3f} ({hidden_other[0][1]}), then {hidden_other[1][0]:.3f} ({hidden_other[1][1]})")
    for what, found in (("behind hers", by_her), ("in front of hers", before_her), ("small beside hers", small),
                        ("cut by the edge", cut_other)):
        found.sort()
        print(f"faces of others {what} against her portrait: {len(found)}, closest {found[0][0]:.3f} "
              f"({found[0][1]}), then {found[1][0]:.3f} ({found[1][1]})")
        for share in (0.1, 0.2, 0.4, 0.6):
            part = [d for d, w in found if f"{share:.0%} " in w]
            if part:
                print(f"  {share:.0%}: {len(part)}, closest {part[0]:.3f}")
    hidden_other = sorted(hidden_other + by_her + before_her + small + cut_other)
    for what, found in (("partly hidden", hidden_her), ("in front of another", her_before),
                        ("cut by the edge", cut_her)):
        found.sort()
        print(f"her face {what} against her portrait: {len(found)}, {found[0][0]:.3f} to {found[-1][0]:.3f} "
              f"(farthest: {found[-1][1]}); under the threshold: {sum(d < consent.THRESHOLD for d, _ in found)}")
        for share in (0.1, 0.2, 0.4):
            part = [d for d, w in found if f"{share:.0%} " in w]
            print(f"  {share:.0%}: {sum(d < consent.THRESHOLD for d in part)} of {len(part)}")

    different.sort()
    print(f"different-person pairs: {len(different)} ({sum(p[2] for p in different)} with both faces frontal)")
    print("closest:")
    for d, what, front in different[:8]:
        print(f"  {d:.3f}  {what}{'' if front else '  (a face not frontal: never compared in a video)'}")
    closest = different[0][0]
    closest_frontal = min(d for d, _, front in different if front)
    print(f"same-person pairs: {len(same)}")
    for d, what, front in sorted(same, reverse=True)[:8]:
        print(f"  {d:.3f}  {what}{'' if front else '  (not frontal)'}")
    drawn = sorted(p for p in same if not p[1].startswith("LFW"))
    print(f"  the portraits drawn into video: {drawn[0][0]:.3f} to {drawn[-1][0]:.3f} (farthest: {drawn[-1][1]})")
    t = consent.THRESHOLD
    kept = [p for p in same if p[0] < t]
    print(f"\nTHRESHOLD {t}: closest different pair {closest:.3f} (frontal only: {closest_frontal:.3f}); "
          f"same-person pairs under it: {len(kept)} of {len(same)} "
          f"({', '.join(w for d, w, _ in same if d >= t) or 'all'} not)")
    if t >= closest:
        print(f"FAIL: THRESHOLD {t} keeps a different-person pair ({different[0][1]}, {closest:.3f})")
        return 1
    if t >= hidden_other[0][0]:
        print(f"FAIL: THRESHOLD {t} keeps a partly hidden face of someone else ({hidden_other[0][1]})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
