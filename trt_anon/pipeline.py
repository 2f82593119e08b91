"""The loop (docs/architecture.md): decode a batch, detect and track (``Anonymizer``), redact, encode.

Frames are written ``lookback`` frames late, because a face first seen in frame f is back-filled
into the frames before it (track.py); the frames waiting for that are views into their batches,
so while ``lookback`` <= ``batch_size`` they keep no more than the previous batch alive (past it, as
with the CPU's batches of 8, about ``lookback`` frames and the rest of their batches). Where that is
too much memory (4K: ~750 MiB), ``Stages.replay`` decodes the file a second time, in step, and the
frames are not held at all: only their timestamps wait.
Encoding runs in one worker thread, one batch behind (x264, swscale and the GPU copy release
the GIL): measured to pay on 2 cores (scripts/bench.py), and it keeps memory to two batches.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from .config import Config
from .cuda import array_module
from .decode.batch import Batch
from .detect.detections import HIT, Detections, Regions
from .errors import InputError
from .frames import Anonymizer
from .report import BoxLog, Report

# What each stage is to the loop. Any object with these methods slots in (``name`` is what the report shows).
# A source is any iterable of ``Batch`` in presentation order (decode/: PyAV, DALI, PyNvVideoCodec; a frame
# range of a file for a Ray segment; a photo).

@runtime_checkable
class Detector(Protocol):
    """A model on a runtime (detect/): frames as displayed, (N, H, W, 3) NumPy or CuPy -> one Detections each."""
    name: str

    def __call__(self, frames: Any) -> list[Detections]: ...


@runtime_checkable
class Redactor(Protocol):
    """A style on the CPU or the GPU (redact/): the frames with each frame's boxes redacted in place."""
    name: str

    def __call__(self, frames: Any, boxes: list[np.ndarray]) -> Any: ...


@runtime_checkable
class Sink(Protocol):
    """Where the redacted frames go, with their timestamps (sink.VideoFile, a photo's StillWriter, a segment's
    encoder); ``last_pts``: the time of the last frame written, in the source's time base."""
    last_pts: int | None

    def encode(self, frames: Any, pts: list[int]) -> None: ...

    def close(self) -> None: ...


@dataclass
class Stages:
    """One object per stage; any backend with the same call signature slots in."""

    decoder: Iterable[Batch]
    detector: Detector
    redactor: Redactor
    sink: Sink
    replay: Iterator[tuple[Any, int]] | None = None  # the decoder's (frame, pts) again, from a second decode:
                                                     # frames waiting for back-fill are not held
    layout: Any = None  # planar.Planar: the decoder hands out its own pixels as planar rows (None: RGB)


def run(stages: Stages, config: Config, report: Report, rotation: int = 0,
        log: BoxLog | None = None, progress: Any = None, stats: Any = None, first: int = 0,
        keep: tuple[int, int] | None = None, first_track: int = 0, decisions=None) -> None:
    """Drive the stages over the whole video. Fills ``report``; raises on any failure.

    ``log`` gets every frame's boxes (the ``--json`` file). ``stats`` (e.g. ``review.FrameStats``) gets
    ``.add(pts, detections, redacted boxes)`` for every frame written.
    A segment (``trt_anon.scale``): the decoder starts at frame index ``first`` of the file, and only frames
    ``keep[0] <= index < keep[1]`` are written; the others are context, tracked but neither redacted nor written;
    its faces are numbered from ``first_track``. ``decisions`` (decisions.Decisions): the faces come from a first
    run, as the user decided, and nothing is detected."""
    if decisions is not None:
        from .decisions import Replayed
        anon = Replayed(decisions, config, stages.redactor, stages.layout)
    else:
        anon = Anonymizer(config, detector=stages.detector, redactor=stages.redactor, rotation=rotation, first=first,
                          first_track=first_track, layout=stages.layout)
    index = first   # file index of the next frame to become final
    waiting: deque = deque()   # (frame, pts) not yet final
    secs = {"decode": 0.0, "detect": 0.0, "redact": 0.0, "encode": 0.0}
    time_base = None
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trt_anon-encode")
    pending: Future | None = None
    shown: dict[int, int] = {}   # track -> frames written with it left visible

    def encode(frames, pts: list[int], ready, sources) -> None:
        t0 = time.perf_counter()
        if ready is not None:  # this thread's CUDA stream waits, on the GPU, for the redaction queued on ours
            array_module(frames).cuda.get_current_stream().wait_event(ready)
        stages.sink.encode(frames, pts)
        if ready is not None:
            # ``sources``, the decoded frames the redactor copied ``frames`` from, are released only once the GPU
            # is past that copy: CuPy would hand their memory to the decoder (another stream) at once
            ready.synchronize()
        secs["encode"] += time.perf_counter() - t0

    def write(final: list[Regions]) -> None:
        """Redact and hand to the encoder the frames that became final, a batch at a time (the tracker's flush
        hands out ``lookback`` frames at once; decoded a second time, they would all be in memory together)."""
        step = config.batch_size or len(final) or 1
        for i in range(0, len(final), step):
            write_batch(final[i:i + step])

    def write_batch(final: list[Regions]) -> None:
        nonlocal pending, index
        if stages.replay is not None:  # the frames becoming final, from the second decode, which must agree
            t0 = time.perf_counter()
            for i in range(len(final)):
                frame, t = next(stages.replay, (None, None))
                if t != waiting[i][1]:
                    raise InputError(f"the second decode of the input disagrees with the first at time "
                                     f"{waiting[i][1]} (got {t}): did the file change while it was read?")
                waiting[i] = (frame, t)
            secs["decode"] += time.perf_counter() - t0
        if keep is not None:  # drop the context frames around a segment
            at, index = index, index + len(final)
            lo, hi = max(keep[0] - at, 0), min(max(keep[1] - at, 0), len(final))
            kept = [waiting.popleft() for _ in final][lo:hi]
            waiting.extendleft(reversed(kept))
            final = final[lo:hi]
        if not final:
            return
        t0 = time.perf_counter()
        frames, pts = zip(*(waiting.popleft() for _ in final))
        batch, boxes = anon.redact(frames, final)
        xp = array_module(batch)
        # GPU: the encoder thread's stream is not ours (with per-thread default streams, or its own stream):
        # it must wait for this event, recorded after the redaction, before it reads a pixel
        ready = xp.cuda.get_current_stream().record() if xp is not np else None
        secs["redact"] += time.perf_counter() - t0
        if pending is not None:
            pending.result()  # one batch in flight at most; re-raises the encoder's error here
        pending = worker.submit(encode, batch, list(pts), ready, frames)
        for i, (d, b) in enumerate(zip(final, boxes)):
            for t in d.track[d.kept].tolist():  # --keep-face: the frames each kept track is shown in, as written
                shown[t] = shown.get(t, 0) + 1
            if log is not None:
                log.add(report.frames + (keep[0] if keep else 0), int(pts[i]), d.to_json(), b)
            if stats is not None:
                stats.add(pts[i], d, b)
            report.count(int((d.kind == HIT).sum()), len(b))
        if progress is not None:
            progress.update(len(final))

    try:
        it = iter(stages.decoder)
        while True:
            t0 = time.perf_counter()
            batch = next(it, None)
            secs["decode"] += time.perf_counter() - t0
            if batch is None:
                break
            time_base = batch.time_base
            t0 = time.perf_counter()
            final = anon.track(batch.frames)
            secs["detect"] += time.perf_counter() - t0
            waiting.extend(zip(batch.frames if stages.replay is None else [None] * len(batch), batch.pts))
            write(final)
        write(anon.end())
        if pending is not None:
            pending.result()
        t0 = time.perf_counter()
        stages.sink.close()
        secs["encode"] += time.perf_counter() - t0
    finally:
        worker.shutdown(wait=True)  # never leave a thread writing into a file being removed
    if decisions is not None and report.frames != len(decisions.frames):
        raise InputError(f"the input has {report.frames} frames, the decisions file {len(decisions.frames)}: "
                         "is it the same file?")
    report.seconds.update(secs)
    if decisions is None:  # a segment's context frames, tracked but not written, do not count
        report.kept.extend({**k, "frames": shown[k["track"]]} for k in anon.kept() if shown.get(k["track"]))
        if config.keep_faces:  # part of "detect": the share --keep-face costs
            report.seconds["consent"] = anon.consent_seconds
    if time_base is not None and stages.sink.last_pts is not None:
        report.duration = float(stages.sink.last_pts * time_base)
