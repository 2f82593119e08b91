"""Review and fix: render an input again with a first run's faces and the user's decisions, detecting nothing.

The first run's ``--json`` file is a decisions file as it is: every face carries its track number, and
``tracks`` lists each face followed with ``"action": "redact"``. Set one to ``"keep"`` to leave that person
visible, and add what the detector missed under ``"added"``:

    "added": [{"keys": [{"frame": 10, "box": [x1, y1, x2, y2]}, {"frame": 40, "box": [x1, y1, x2, y2]}]}]

a region from its first key frame to its last, the box moving in a straight line between keys (one key: that
frame only). Fail closed: a file made from another input (the SHA-256 in its audit record) or for another frame
count is refused, as are an unknown track or action; every face not marked ``keep`` stays redacted, with the
margins it had among all the faces of its frame.
"""
from __future__ import annotations

import dataclasses
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audit import sha256
from .detect.detections import CLASSES, KIND_NAMES, Regions
from .errors import ConfigError, InputError
from .frames import Anonymizer
from .redact import face_margins, grow, redaction_boxes

KINDS = {name: kind for kind, name in KIND_NAMES.items()}
ACTIONS = ("redact", "keep", "matched")   # matched: visible where a --keep-face run matched it (faces "kept")
ROUNDING = 0.06   # pixels: the file's boxes are rounded to 0.1, so each is grown by this (covers what it covered)


@dataclass(frozen=True)
class Decisions:
    path: Path
    sha256: str                             # of the decisions file itself, for the audit record
    frames: list[list[dict]]                # per frame, the first run's faces (box, score, kind, eyes, track)
    keep: frozenset[int]                    # tracks left visible
    matched: frozenset[int]                 # tracks left visible where the first run matched them (--keep-face)
    added: list[list[tuple[int, list]]]     # per added region, its (frame, box) keys in frame order
    options: dict                           # the first run's options (its audit record)

    @classmethod
    def load(cls, path: str | Path, source: Path) -> "Decisions":
        """Read and check a decisions file against ``source`` (one-line errors, before any work)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            audit, frames, tracks = data["audit"], data["frames"], data.get("tracks", [])
            made_from = audit["input"]["sha256"]
        except OSError as exc:
            raise ConfigError(f"cannot read the decisions file {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{path} is not a decisions file: write one with --json on the first run") from None
        if sha256(source) != made_from:
            raise ConfigError(f"{path} was made from another input than {source} (SHA-256 differs); "
                              "run this input with --json first")
        known = {face["track"] for faces in (f["faces"] for f in frames) for face in faces if "track" in face}
        classes = {face.get("class", "face") for faces in (f["faces"] for f in frames) for face in faces}
        if not classes <= set(CLASSES):
            raise ConfigError(f"{path}: unknown class {sorted(classes - set(CLASSES))[0]!r} (known: "
                              f"{', '.join(CLASSES)})")
        keep, matched = set(), set()
        for t in tracks:
            if t.get("id") not in known:
                raise ConfigError(f"{path}: track {t.get('id')!r} is on no frame of the first run")
            if t.get("action") not in ACTIONS:
                raise ConfigError(f"{path}: track {t['id']}: action must be redact, keep or matched, not "
                                  f"{t.get('action')!r}")
            {"keep": keep, "matched": matched}.get(t["action"], set()).add(t["id"])
        added = [cls._region(path, i, r, len(frames)) for i, r in enumerate(data.get("added", []))]
        return cls(path, sha256(path), [f["faces"] for f in frames], frozenset(keep), frozenset(matched), added,
                   audit.get("options") or {})

    def check(self, config) -> None:
        """Refuse settings that would cover less than the first run did: eye bands where it covered faces,
        smaller margins (a style or cell size may change: every style covers the same cells)."""
        first = self.options
        if first.get("target") == "face" and config.target == "eyes":
            raise ConfigError(f"{self.path}: the first run covered whole faces; --target eyes would show them")
        for name in ("margin_px", "margin_rel"):
            if getattr(config, name) < first.get(name, 0):
                raise ConfigError(f"{self.path}: {name} {getattr(config, name)} is smaller than the first run's "
                                  f"{first[name]}")

    @staticmethod
    def _region(path: Path, i: int, region, frames: int) -> list[tuple[int, list]]:
        try:
            keys = sorted((int(k["frame"]), [float(v) for v in k["box"]]) for k in region["keys"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: added region {i} needs keys of {{\"frame\": N, \"box\": [x1, y1, x2, y2]}}") \
                from None
        if not keys or any(len(b) != 4 or b[2] <= b[0] or b[3] <= b[1] for _, b in keys) or \
                not 0 <= keys[0][0] <= keys[-1][0] < frames:
            raise ConfigError(f"{path}: added region {i}: boxes must be x1 < x2, y1 < y2, frames 0 to {frames - 1}")
        return keys

    def faces(self, index: int) -> Regions:
        """Frame ``index``'s faces; ``kept`` the ones left visible: on a track kept visible, or shown by the first
        run on a track left as it matched (marked so in the next ``--json`` too). The others are redacted."""
        if index >= len(self.frames):
            raise InputError(f"the input has more frames than {self.path} describes ({len(self.frames)}): "
                             "is it the same file?")
        faces = self.frames[index]
        n = len(faces)
        grown = np.array([-ROUNDING, -ROUNDING, ROUNDING, ROUNDING], np.float32)  # an edge on a cell's border
        det = Regions(np.array([f["box"] for f in faces], np.float32).reshape(n, 4) + grown,  # stays on it
                      np.array([f["score"] for f in faces], np.float32),
                      np.array([KINDS[f["kind"]] for f in faces], np.uint8),
                      np.array([f.get("track", -1) for f in faces], np.int32),
                      np.array([f.get("eyes", f["box"]) for f in faces], np.float32).reshape(n, 4) + grown,
                      np.array([CLASSES.index(f.get("class", "face")) for f in faces], np.uint8))
        shown = np.array([f.get("track") in self.keep or (f.get("kept") is True and f.get("track") in self.matched)
                          for f in faces], bool)
        return dataclasses.replace(det, kept=shown)

    def added_boxes(self, index: int) -> np.ndarray:
        """The regions added by hand that cover frame ``index``."""
        out = []
        for keys in self.added:
            for (f0, b0), (f1, b1) in zip(keys, keys[1:] or keys):
                if f0 <= index <= f1:
                    a = 0.0 if f1 == f0 else (index - f0) / (f1 - f0)
                    out.append((1 - a) * np.asarray(b0) + a * np.asarray(b1))
                    break
        return np.array(out, np.float32).reshape(-1, 4)

    def regions(self) -> list[dict]:
        """The added regions as the file says them, for the next ``--json`` (a decisions file in turn)."""
        return [{"keys": [{"frame": f, "box": b} for f, b in keys]} for keys in self.added]

    def summary(self) -> dict:
        """For the audit record: which file, and what it changed."""
        return {"file": str(self.path), "sha256": self.sha256, "kept": sorted(self.keep), "added": len(self.added),
                **({"matched": sorted(self.matched)} if self.matched else {})}


class Replayed(Anonymizer):
    """The Anonymizer's steps on a first run's faces: nothing detected or tracked, every frame final at once,
    the faces not kept redacted (margins as among all of them) and the added regions with them."""

    def __init__(self, decisions: Decisions, config, redactor, layout=None) -> None:
        super().__init__(config, detector=None, redactor=redactor, layout=layout)
        self.decisions = decisions
        self.next_index = 0
        self.order: deque[int] = deque()  # the frame index of each frame out

    def track(self, frames) -> list[Regions]:
        out = []
        for _ in range(len(frames)):
            out.append(self.decisions.faces(self.next_index))
            self.order.append(self.next_index)
            self.next_index += 1
        return out

    def end(self) -> list[Regions]:
        return []

    def boxes(self, final: list[Regions], height: int, width: int) -> list[np.ndarray]:
        c, out = self.config, []
        for d in final:
            index = self.order.popleft()
            faces = _covered(d, ~d.kept, c, width, height)
            added = np.clip(self.decisions.added_boxes(index), 0, [width, height, width, height])
            out.append(np.concatenate([faces, added.astype(np.float32)]))
        return out


def _covered(det: Regions, redact: np.ndarray, config, width: int, height: int) -> np.ndarray:
    """The boxes of the faces to redact, grown as among all of them: as the first run grew them, and where the
    file's rounded scores tie (which of two faces that meet scored higher is lost), both with the wider margin."""
    c = config
    if c.target == "eyes" or len(det) < 2:
        return redaction_boxes(det, c.target, c.margin_px, c.margin_rel, width, height, only=redact)
    order = np.arange(len(det), dtype=np.float32) * (1e-4 / len(det))   # under the file's 0.001 step: ties only
    rel = np.maximum(face_margins(dataclasses.replace(det, score=det.score + order), c.margin_px, c.margin_rel),
                     face_margins(dataclasses.replace(det, score=det.score - order), c.margin_px, c.margin_rel))
    return grow(det.xyxy[redact], c.margin_px, rel[redact], width, height)
