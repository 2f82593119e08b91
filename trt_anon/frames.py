"""The frame-level API, for people who run their own decode loop (robotics logs, dataset tools, DALI or
PyTorch pipelines): frames in, redacted frames out. ``process()`` runs on the same object: its loop
(``pipeline.run``) calls ``track``, ``redact`` and ``end`` and holds the frames itself.

    anon = trt_anon.Anonymizer(target="face")
    for batch in my_frames():                  # (N, H, W, 3) uint8 RGB: NumPy, or CuPy / PyTorch on CUDA
        ready = anon.push(batch)               # the frames whose boxes are final, redacted
        write(ready.frames)
    write(anon.flush().frames)                 # the rest, at the end of the stream

Frames come back ``lookback`` frames late (36 by default): a face first seen in frame f is back-filled
into the frames before it, so a frame is only final once the frames after it have been seen. Frames on
the GPU stay there (CuPy and PyTorch tensors through DLPack) and come back as the type they came in.
"""
from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cadence import Cadence
from .config import Config
from .cuda import array_module
from .detect import select_detector
from .detect.detections import Detections, Regions
from .errors import ConfigError, InputError
from .redact import box_margin, redaction_boxes, select_redactor, uncovered
from .track import Tracker

DLPACK_CUDA = 2  # DLPack's device type for CUDA memory (kDLCUDA)


def rotate_for_display(frames, rotation: int, xp=np):
    """The frames as a viewer sees them. ``rotation`` is the display matrix's angle
    (av_display_rotation_get, counter-clockwise): players show np.rot90(stored, rotation / 90)."""
    k = (rotation // 90) % 4
    return xp.ascontiguousarray(xp.rot90(frames, k=k, axes=(1, 2))) if k else frames


def unrotate_boxes(dets: list[Detections], rotation: int, height: int, width: int) -> list[Detections]:
    """Map boxes found on ``rotate_for_display`` frames back onto the stored H x W frame."""
    k = (rotation // 90) % 4
    if not k:
        return dets
    out = []
    for d in dets:
        n = len(d)
        p = np.concatenate([d.xyxy.reshape(-1, 2), d.landmarks.reshape(-1, 2)])  # (x', y') points
        x, y = p[:, 0], p[:, 1]
        # np.rot90 by k: B[i, j] = A[j, W-1-i] (k=1), A[H-1-i, W-1-j] (k=2), A[H-1-j, i] (k=3)
        sx, sy = {1: (width - y, x), 2: (width - x, height - y), 3: (y, height - x)}[k]
        q = np.stack([sx, sy], axis=1).astype(np.float32)
        corners = q[:2 * n].reshape(n, 2, 2)
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        out.append(Detections(boxes, d.score, q[2 * n:].reshape(n, 5, 2), d.kind, d.class_id))
    return out


@dataclass
class Ready:
    """Frames that became final: ``frames`` (M, H, W, 3) redacted, of the type pushed; for each, ``boxes``
    (K, 4) float32 x1, y1, x2, y2, the rectangles redacted (grown faces or eye bands), and ``detections``,
    the tracker's faces (kind hit, held or filled). ``start`` is the index of the first frame in the stream."""

    frames: Any
    boxes: list[np.ndarray]
    detections: list[Regions]
    start: int

    def __len__(self) -> int:
        return len(self.boxes)


class Anonymizer:
    """Loads the detector once (on the first batch, for its frame size and device) and keeps the tracker
    between calls. Options are those of ``process()`` that concern the pictures (``target``, ``threshold``,
    ``det_size``, ``style``, ``mosaic_cell``, ``margin_*``, ``ttl``, ``lookback``, ``backend``, ``keep_faces``:
    the consenting people's faces left visible, ``Ready.detections[i].kept`` and ``kept()`` say which, ...).

    Pushed frames are copied: the caller may reuse its buffer for the next batch. A stream has one frame
    size; ``flush()`` ends it, and the next ``push`` starts a new one (same detector). ``detect_every="auto"``
    (the default) plans its looks per batch, a batch's last frame always looked at: frames pushed fewer at a
    time than its next gap (up to 4) are held until there are enough, so frames come back up to 3 frames later.
    """

    def __init__(self, config: Config | None = None, *, detector=None, redactor=None, rotation: int = 0,
                 first: int = 0, first_track: int = 0, layout=None, **options) -> None:
        """``detector`` and ``redactor``: stages already chosen (``process()`` passes those ``stages.choose``
        made), else made on the first batch. ``layout`` (``planar.Planar``, with stages chosen for it): the
        frames are the decoder's planar rows, not RGB; the detector gets RGB of the frames it looks at.
        ``rotation``: the frames are stored turned by a display matrix
        (phone video): faces are searched as displayed, boxes are given on the stored frames. ``first``: the
        index of the first frame (a segment of a file: eye refreshes fall where a whole run's do); ``first_track``:
        the first face's number (``Regions.track``; a segment numbers its faces apart from the others')."""
        self.config = Config.from_options(config, **options) if options or config is None else config
        self.detector, self.redactor, self.rotation, self.layout = detector, redactor, rotation, layout
        self.shape: tuple[int, ...] | None = None   # (H, W, 3) of the stream's frames
        self.gpu = False
        self.torch = False                          # frames came as PyTorch tensors: they go back as such
        self.first_track = first_track
        self.kept_before: list[dict] = []           # the tracks kept visible in the streams flushed before
        self.consent_before = 0.0                   # and the seconds their keepers took
        self._reset(first)

    def _reset(self, first: int = 0) -> None:
        self.tracker = Tracker(self.config.ttl, self.config.eyes_every, self.config.lookback,
                               self.config.longest_gap(), self.first_track)
        self.tracker.next_frame = self.tracker.next_final = first
        self.cadence = Cadence(self.config.detect_every)
        self.tail = None                            # the last frame, as stored, if not looked at yet
        self.gathered: list = []                    # "auto": frames held until the cadence's next look
        self.waiting: deque = deque()               # frames not yet final (push/flush)
        self.next_out = first                       # index of the next frame handed back
        old = getattr(self, "keeper", None)
        self.keeper = None                          # keep_faces: which faces stay visible (consent.py)
        if self.config.keep_faces:
            from .consent import Keeper, people
            self.keeper = Keeper(people(self.config.keep_faces), self.tracker.lookback, self.rotation)
        if old is not None:
            self.kept_before.extend(old.summary())
            self.consent_before += old.seconds

    # --- the steps, for a caller that holds the frames itself (process() does: it may decode them again)
    def track(self, frames) -> list[Regions]:
        """Find and track the faces in the next frames as stored ((N, H, W, 3) RGB, or (N, L) planar rows with
        ``layout``); the detections of the frames that became final, in order (``lookback`` frames behind). With
        ``detect_every="auto"``, frames fewer than the cadence's next gap are held and tracked with the ones that
        follow (one frame at a time, each frame would be a batch's last, always looked at); ``skip`` and ``end``
        track what is held first."""
        if self.config.detect_every != "auto":
            return self._kept(self._track(frames))
        self.gathered.append(frames)
        if sum(len(f) for f in self.gathered) < self.cadence.gap(self.tracker):
            return []
        return self._kept(self._track_held())

    def _track_held(self) -> list[Regions]:
        """The frames ``track`` holds, tracked now as one batch."""
        if not self.gathered:
            return []
        held, self.gathered = self.gathered, []
        return self._track(held[0] if len(held) == 1 else array_module(held[0]).concatenate(held))

    def skip(self, n: int = 1) -> list[Regions]:
        """``n`` frames the caller has no pixels for (a live frame dropped as late): frames not looked at, so
        that holds and motion stay right across them; the detections of the frames that became final."""
        final = self._track_held()
        return self._kept(final + self.tracker.push([None] * n))

    def _size(self, frames) -> tuple[int, int]:
        """(height, width) of the stream's frames as stored."""
        return (self.layout.height, self.layout.width) if self.layout else tuple(frames.shape[1:3])

    def _detect(self, frames) -> list[Detections]:
        """The detector on frames as stored; boxes on them too. It sees the frames as displayed, in RGB: planar
        rows are converted only here, straight to the detector's input size where it says one (``input_size``)."""
        height, width = self._size(frames)
        size, scaled = getattr(self.detector, "input_size", None), {}
        if self.layout is not None:
            turned = self.rotation % 180 != 0
            shown = (width, height) if turned else (height, width)
            h, w = size(*shown) if size else shown
            frames = self.layout.rgb(frames, ((w, h) if turned else (h, w)) if size else None)
            scaled = {"shown": shown} if size else {}
        found = self.detector(rotate_for_display(frames, self.rotation, array_module(frames)), **scaled)
        return unrotate_boxes(found, self.rotation, height, width)

    def _track(self, frames) -> list[Regions]:
        xp = array_module(frames)
        first = self.tracker.next_frame
        look = list(range(len(frames))) if self.config.detect_every == 1 else \
            self.cadence.pick(frames, first, self.tracker)
        dets: list[Detections | None] = [None] * len(frames)
        while look:  # the detector takes the frames it looks at as one batch; the cadence may want more
            for i, d in zip(look, self._detect(frames if len(look) == len(frames) else frames[xp.asarray(look)])):
                dets[i] = d
            look = self.cadence.more(dets, first, self.tracker)
        # the last frame, if not looked at: the detector looks at it if the stream ends there
        if dets:
            self.tail = None if dets[-1] is not None else frames[-1:].copy()
        if self.keeper is None:
            return self.tracker.push(dets)
        final = []
        for i, d in enumerate(dets):  # a frame at a time: the keeper reads the tracks as each frame left them
            final += self.tracker.push([d])
            if d is not None:
                self.keeper.look(first + i, frames[i] if self.layout is None else self.layout.view(frames[i]),
                                 self.tracker)
        return final

    def _kept(self, final: list[Regions]) -> list[Regions]:
        """The final frames (the last ones the tracker handed out), the faces to leave visible marked."""
        if self.keeper is None or not final:
            return final
        return self.keeper.mark(final, self.tracker.next_final - len(final))

    def end(self, n: int | None = None, look: bool = True) -> list[Regions]:
        """The end of the stream: the detections of every frame not yet final. ``n``: only the next ``n`` frames
        (the oldest not yet final) are made final, now, with what was seen so far, and the stream goes on (a
        live frame whose deadline came before the frames after it: a stalled or bursty source). The frames held
        are tracked and the last frame is looked at if it was not, unless the ``n`` frames need no look: the
        detector looked at a frame after them (their boxes are whole but for back-fill from frames not yet come),
        or ``look`` is False (frames ``skip`` was given, without pixels)."""
        if n is not None and (not look or self.tracker.next_final + n <= self.tracker.last_look + 1):
            return self._kept(self.tracker.flush(None, self.tracker.next_final + n))
        final = self._track_held()
        last = None
        if self.tail is not None:
            last = self._detect(self.tail)[0]
            self.tail = None
        upto = None if n is None else self.tracker.next_final + max(0, n - len(final))
        if n is None and self.keeper is not None:
            self.keeper.finish()
        return self._kept(final + self.tracker.flush(last, upto))

    def kept(self) -> list[dict]:
        """The tracks left visible as a consenting person's (``keep_faces``): track, person, the largest distance
        that matched, faces compared, frames shown."""
        return self.kept_before + (self.keeper.summary() if self.keeper is not None else [])

    @property
    def consent_seconds(self) -> float:
        """Seconds spent on ``keep_faces`` (choosing, cropping and embedding faces), within the tracking time."""
        return self.consent_before + (self.keeper.seconds if self.keeper is not None else 0.0)

    def boxes(self, final: list[Regions], height: int, width: int) -> list[np.ndarray]:
        """The rectangles to redact in each final frame: grown faces (not those left visible), or grown eye
        bands."""
        c = self.config
        return [redaction_boxes(d, c.target, c.margin_px, c.margin_rel, width, height) for d in final]

    def redact(self, frames, final: list[Regions]) -> tuple[Any, list[np.ndarray]]:
        """The final frames redacted (in place where the redactor can) and their boxes; a face left visible in
        front of a redacted one is put back where the other's margin covered it (``redact.uncovered``)."""
        height, width = self._size(frames[0][None])
        boxes = self.boxes(final, height, width)
        c = self.config
        shown = [(i, u) for i, (d, b) in enumerate(zip(final, boxes)) if d.kept.any()
                 for u in uncovered(d, b, c.target, c.mosaic_cell, c.style, box_margin(c), height, width)]
        saved = [[p[y0 >> sy:ye >> sy, x0 >> sx:xe >> sx].copy() for p, (sy, sx) in self._planes(frames[i])]
                 for i, (y0, ye, x0, xe, _) in shown]
        out = self.redactor(frames, boxes)
        xp = array_module(out)
        for (i, (y0, ye, x0, xe, mask)), before in zip(shown, saved):
            for (p, (sy, sx)), old in zip(self._planes(out[i]), before):
                m = mask.reshape((ye - y0) >> sy, 1 << sy, (xe - x0) >> sx, 1 << sx).all(axis=(1, 3))
                region = p[y0 >> sy:ye >> sy, x0 >> sx:xe >> sx]
                m = xp.asarray(m if region.ndim == 2 else m[..., None])
                region[...] = xp.where(m, old, region)
        return out, boxes

    def _planes(self, frame) -> list[tuple[Any, tuple[int, int]]]:
        """A frame's planes and each one's (vertical, horizontal) subsampling: RGB is one plane, unshifted."""
        if self.layout is None:
            return [(frame, (0, 0))]
        return list(zip(self.layout.planes(frame), self.layout.shifts))

    # --- frames in, frames out
    def push(self, frames) -> Ready:
        """Detect and track faces in ``frames``; return the frames that became final, redacted."""
        batch = self._take(frames)
        if len(batch) == 0:
            return self._ready([])
        self.waiting.extend(batch)
        return self._ready(self.track(batch))

    def flush(self) -> Ready:
        """The end of the stream: every frame still waiting, redacted. The tracker starts afresh."""
        ready = self._ready(self.end())
        self._reset()
        return ready

    def _take(self, frames):
        """``frames`` as a batch on its device (copied), checked, and the stages made for it once."""
        if not (isinstance(frames, np.ndarray) or type(frames).__module__.startswith("cupy")):
            torch = sys.modules.get("torch")
            self.torch = torch is not None and isinstance(frames, torch.Tensor)
            if getattr(frames, "__dlpack_device__", lambda: (None,))()[0] == DLPACK_CUDA:
                import cupy as cp
                frames = cp.from_dlpack(frames)  # zero-copy, on the device
            else:
                frames = np.from_dlpack(frames) if hasattr(frames, "__dlpack__") else np.asarray(frames)
        xp = array_module(frames)
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype not in (np.uint8, np.uint16):
            raise InputError(f"frames must be (N, H, W, 3) uint8 or uint16 RGB, got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        gpu = xp is not np
        if self.shape is None:
            if gpu and frames.dtype != np.uint8:
                raise InputError("frames on the GPU must be uint8 (the GPU stages are 8-bit)")
            if gpu and self.config.backend == "cpu" or not gpu and self.config.backend == "gpu":
                raise ConfigError(f"backend {self.config.backend!r} asked for, but the frames are "
                                  f"{'on the GPU' if gpu else 'NumPy arrays'}")
            self.gpu, self.shape = gpu, tuple(frames.shape[1:])
            if self.detector is None:
                shown = self.shape[:2] if self.rotation % 180 == 0 else self.shape[1::-1]
                self.detector = select_detector(self.config, gpu=gpu, frame_hw=shown if gpu else None)
            if self.redactor is None:
                self.redactor = select_redactor(self.config, gpu=gpu)
        if tuple(frames.shape[1:]) != self.shape or gpu != self.gpu:
            raise InputError(f"every frame of a stream has the size and device of the first: "
                             f"{self.shape} {'GPU' if self.gpu else 'CPU'}, got {tuple(frames.shape[1:])} "
                             f"{'GPU' if gpu else 'CPU'}")
        return frames.copy(order="C")

    def _ready(self, final: list[Regions]) -> Ready:
        start = self.next_out
        self.next_out += len(final)
        if not final:
            xp = np
            if self.gpu:
                import cupy as xp
            return Ready(self._out(xp.empty((0, *(self.shape or (0, 0, 3))), np.uint8)), [], [], start)
        frames = [self.waiting.popleft() for _ in final]
        redacted, boxes = self.redact(array_module(frames[0]).stack(frames), final)
        return Ready(self._out(redacted), boxes, final, start)

    def _out(self, frames):
        """Frames back as the type they came in: PyTorch tensors for PyTorch (zero-copy on the GPU)."""
        if not self.torch:
            return frames
        import torch
        return torch.from_dlpack(frames) if array_module(frames) is not np else torch.from_numpy(frames)
