"""What a run did: counts, timings, and which backend ran each stage; and the ``--json`` file that holds
it with every frame's boxes."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np


@dataclass
class Report:
    input: str
    output: str
    frames: int = 0                 # frames written (== frames decoded)
    duration: float = 0.0           # seconds of video written
    wall: float = 0.0               # seconds this run took
    faces: int = 0                  # detections (face-frames where the detector fired)
    frames_with_faces: int = 0      # frames with at least one redacted box
    max_faces: int = 0              # most redacted boxes in one frame (held ones included)
    redacted_boxes: int = 0         # boxes mosaicked, held and back-filled ones included
    decode_errors: int = 0          # packets the decoder rejected (their frames are not written)
    backends: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    review: str | None = None       # the review page written (--review), None when not asked or not written
    error: str | None = None        # process_many: the one-line error of a file that failed (frames stay 0)
    placement: list[dict] = field(default_factory=list)  # process_many: where each part ran (node, GPU, frames)
    live: dict = field(default_factory=dict)  # live streams: the delay each frame had, frames dropped or covered
    signed: dict = field(default_factory=dict)  # --sign: who signed the output's Content Credentials, its parent
    kept: list[dict] = field(default_factory=list)  # --keep-face: the tracks left visible (track, person, distance,
                                                    # faces compared, frames shown)

    def count(self, faces: int = 0, boxes: int = 0) -> None:
        """One frame written: ``faces`` detections in it, ``boxes`` rectangles redacted."""
        self.frames += 1
        self.faces += faces
        self.redacted_boxes += boxes
        if boxes:
            self.frames_with_faces += 1
            self.max_faces = max(self.max_faces, boxes)

    @property
    def fps(self) -> float:
        """Frames per second achieved, end to end."""
        return self.frames / self.wall if self.wall > 0 else 0.0

    def summary(self) -> str:
        stages = ", ".join(f"{k}={v}" for k, v in self.backends.items())
        signed = f", Content Credentials signed by {self.signed['signer']}" if self.signed else ""
        kept = "".join(f"\n  kept visible: {k['person']} (track {k['track']}, {_n(k['frames'], 'frame')}, distance "
                       f"{k['distance']})" for k in self.kept)
        return (f"{self.output}: {_n(self.frames, 'frame')} in {self.wall:.1f}s ({self.fps:.1f} fps), faces in "
                f"{_n(self.frames_with_faces, 'frame')} (max {_n(self.max_faces, 'box', 'boxes')}){signed} "
                f"[{stages}]{kept}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("error", "placement", "live", "signed", "kept"):  # absent from the JSON of a run without them
            if not d[k]:
                del d[k]
        d["fps"] = round(self.fps, 2)
        d["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        return d


class BoxLog:
    """The ``--json`` file: ``{"frames": [...], "tracks": [...], "report": {...}, "audit": {...}}``, one line per
    frame as it is written. ``tracks`` sums up each face the tracker followed (``Regions.track``): its first
    and last frame, frames, largest box width, lowest detection score, and ``"action": "redact"`` (``"matched"``
    for one left visible where it matched a consenting person, ``--keep-face``, with that ``person`` and the
    ``distance``; its faces shown say ``"kept": true``; where one is in front of a redacted rectangle, part of it is
    restored in the video: ``redact.uncovered`` computes which pixels from the frame's faces and rectangles).

    ``envelope=False`` writes the frame lines only (a segment's piece, joined into the file by ``add_line``).
    ``slim=True`` leaves out each frame's timestamp and redacted rectangles: what a decisions file needs, a
    third smaller (the review page carries this one)."""

    def __init__(self, file: TextIO, envelope: bool = True, keep=(), added: list | None = None,
                 slim: bool = False) -> None:
        """``keep``: the tracks a decisions file left visible (their action says so); ``added``: its regions,
        written back as ``"added"`` so that this file, used as decisions, renders the same again."""
        self.file, self.count, self.keep, self.added, self.slim = file, 0, frozenset(keep), added, slim
        self.tracks: dict[int, dict] = {}
        if envelope:
            file.write('{"frames": [\n')

    def add(self, frame: int, pts: int, faces: list[dict], redacted: np.ndarray) -> None:
        """One frame: the tracker's faces (``Regions.to_json``) and the rectangles redacted."""
        entry = {"frame": frame, "faces": faces} if self.slim else {
            "frame": frame, "pts": pts, "faces": faces, "redacted": [[round(float(v), 1) for v in r] for r in redacted]}
        self._write(json.dumps(entry), entry)

    def add_line(self, line: str) -> None:
        """A frame's JSON object as written by ``add`` (a piece's line, with or without its separator)."""
        line = line.lstrip(",").rstrip("\n")
        self._write(line, json.loads(line))

    def _write(self, line: str, entry: dict) -> None:
        self.file.write(("," if self.count else "") + line + "\n")
        self.count += 1
        for face in entry["faces"]:
            if "track" not in face:
                continue
            t = self.tracks.setdefault(face["track"], {"id": face["track"], "first": entry["frame"],
                                                       "last": entry["frame"], "frames": 0, "largest": 0.0,
                                                       "lowest_score": 1.0,
                                                       "action": "keep" if face["track"] in self.keep else "redact"})
            if face.get("kept") and t["action"] == "redact":  # left visible where it matched a consenting person
                t["action"] = "matched"
            t["last"] = entry["frame"]
            t["frames"] += 1
            t["largest"] = max(t["largest"], round(face["box"][2] - face["box"][0], 1))
            if face["kind"] in ("hit", "weak"):
                t["lowest_score"] = min(t["lowest_score"], face["score"])

    def close(self, report: Report, audit: dict | None = None) -> None:
        """The tracks and the report, once complete: the file then holds what the caller gets; and the run's
        audit record (``audit.record``), which ``trt-anon verify`` checks files against."""
        for k in report.kept:  # --keep-face: who each track kept visible matched, and how closely
            if k["track"] in self.tracks:
                self.tracks[k["track"]].update(person=k["person"], distance=k["distance"])
        tracks = ",\n".join(json.dumps(t) for t in self.tracks.values())
        added = "" if self.added is None else ',\n"added": ' + json.dumps(self.added)
        self.file.write('],\n"tracks": [\n' + tracks + "\n]" + added + ',\n"report": ' + json.dumps(report.to_dict())
                        + (',\n"audit": ' + json.dumps(audit) if audit is not None else "") + "}\n")


def _n(count: int, one: str, many: str = "") -> str:
    """``1 frame``, ``2 frames``."""
    return f"{count} {one if count == 1 else many or one + 's'}"
