"""Reading outputs back, and the checks every end-to-end test makes on them."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from synth import MIN_IN_VIEW, Clip

from trt_anon.detect.detections import grow
from trt_anon.redact import OVERLAP_MARGIN
from trt_anon.redact.cells import face_cells

CELL = 25


def decode_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def video_times(path: Path) -> list:
    """Presentation times of every video frame, as exact fractions of a second."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [f.pts * f.time_base for f in c.decode(s)]


def audio_packets(path: Path) -> list[list[bytes]]:
    with av.open(str(path)) as c:
        out = []
        for s in c.streams.audio:
            with av.open(str(path)) as c2:
                out.append([bytes(p) for p in c2.demux(c2.streams[s.index]) if p.size])
        return out


def _seconds(ticks: int | None, time_base) -> Fraction | None:
    return None if ticks is None else ticks * Fraction(time_base)


def copied_packets(path: Path) -> list[list[tuple]]:
    """Every audio and subtitle stream's packets in file order: (bytes, pts, dts, duration), times in
    exact seconds. The empty cues the MP4 muxer writes between mov_text subtitles (b"\\0\\0") are left out."""
    with av.open(str(path)) as c:
        indices = [s.index for s in c.streams if s.type in ("audio", "subtitle")]
    out = []
    for index in indices:
        with av.open(str(path)) as c:
            s = c.streams[index]
            filler = s.codec_context.name == "mov_text"
            out.append([(bytes(p), _seconds(p.pts, p.time_base), _seconds(p.dts, p.time_base),
                         _seconds(p.duration, p.time_base))
                        for p in c.demux(s) if p.size and not (filler and bytes(p) == b"\0\0")])
    return out


def _format(path: Path) -> str:
    with av.open(str(path)) as c:
        return c.format.name


def assert_copied(src: Path, out: Path) -> None:
    """Every audio and subtitle packet of ``src`` is in ``out``, byte for byte, with its pts, dts and duration.

    Exact in seconds; into Matroska from another format, to Matroska's millisecond, measured from the first
    video frame (the muxer shifts every stream alike so that none starts before 0, e.g. by the AAC priming),
    and durations where Matroska gives one (it leaves some out of its blocks)."""
    a, b = copied_packets(src), copied_packets(out)
    assert [len(s) for s in b] == [len(s) for s in a], "packets per audio/subtitle stream differ"
    for i, (sa, sb) in enumerate(zip(a, b)):
        assert [p[0] for p in sb] == [p[0] for p in sa], f"stream {i}: packet bytes differ"
    ms = _format(out).startswith("matroska") and not _format(src).startswith("matroska")
    ta, tb = (min(video_times(src)), min(video_times(out))) if ms else (0, 0)
    tick = Fraction(1, 1000) if ms else 0
    for i, (sa, sb) in enumerate(zip(a, b)):
        for k, (pa, pb) in enumerate(zip(sa, sb)):
            want = [None if t is None else t - ta for t in pa[1:3]] + [pa[3]]
            got = [None if t is None else t - tb for t in pb[1:3]] + [pb[3] if pb[3] or not ms else pa[3]]
            same = all((w is None) == (g is None) and (w is None or abs(w - g) <= tick) for w, g in zip(want, got))
            assert same, (f"stream {i} packet {k}: (pts, dts, duration) {[_float(t) for t in got]} s, "
                          f"in the input {[_float(t) for t in want]} s")


def _float(t: Fraction | None) -> float | None:
    return None if t is None else float(t)


def cell_deviation(frame: np.ndarray, box, cell: int = CELL, shown: np.ndarray | None = None) -> float:
    """Mean absolute deviation of the pixels in ``box`` from their mosaic cell's mean.

    ~0 when the region is mosaicked (codec noise aside); large for a real face. With ``shown`` (a mask
    over the box rounded to whole pixels, ``Clip.in_view``), only the cells holding a pixel of it count.
    Cells larger than ``cell`` are whole multiples of it on the same grid, so each of these is constant too.
    """
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if shown is not None:  # a box rotated with its clip may round one pixel differently
        shown = np.pad(shown, ((0, max(0, y2 - y1 - shown.shape[0])), (0, max(0, x2 - x1 - shown.shape[1]))))
    devs, n = 0.0, 0
    for cy in range(y1 // cell * cell, y2, cell):
        for cx in range(x1 // cell * cell, x2, cell):
            ya, yb = max(cy, y1), min(cy + cell, y2)
            xa, xb = max(cx, x1), min(cx + cell, x2)
            if yb <= ya or xb <= xa or (shown is not None and not shown[ya - y1:yb - y1, xa - x1:xb - x1].any()):
                continue
            # the deviation is measured over the whole cell, which must be constant if mosaicked
            block = frame[cy:min(cy + cell, frame.shape[0]), cx:min(cx + cell, frame.shape[1])].astype(np.float32)
            devs += np.abs(block - block.reshape(-1, 3).mean(0)).sum() / 3
            n += block.shape[0] * block.shape[1]
    return devs / max(n, 1)


def faces_to_check(clip: Clip, i: int, min_side: float = 12) -> list[tuple[tuple, np.ndarray | None]]:
    """Frame ``i``'s ground-truth faces that must be covered, with the mask of their pixels in view: those
    with at least ``MIN_IN_VIEW`` of the face in view (in the frame, not behind a face drawn over it), and
    not a sliver at the frame edge. A clip without its faces (made elsewhere): every box, whole."""
    boxes = clip.boxes[i]
    if not clip.faces:
        return [(b, None) for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= min_side]
    return [(b, shown) for b, (shown, share) in zip(boxes, clip.in_view(i))
            if share >= MIN_IN_VIEW and min(b[2] - b[0], b[3] - b[1]) >= min_side]


def background_mask(shape, boxes, pad) -> np.ndarray:
    """True where a pixel is at least ``pad`` away from every box (``pad``: one, or one per box)."""
    mask = np.ones(shape[:2], bool)
    for (x1, y1, x2, y2), p in zip(boxes, np.broadcast_to(np.asarray(pad, np.int64), (len(boxes),))):
        mask[max(0, int(y1) - p):int(y2) + p, max(0, int(x1) - p):int(x2) + p] = False
    return mask


def reach(boxes) -> np.ndarray:
    """How far from each face box redaction may go: margins (more where faces meet), one cell (larger for
    large faces) and two more."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    rel = 0.1 + OVERLAP_MARGIN
    grown = grow(b.astype(np.float32), 12, rel, 1 << 20, 1 << 20)
    return (rel * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) + face_cells(grown) + 2 * CELL).astype(np.int64)


def frame_problem(clip: Clip, i: int, before: np.ndarray, after: np.ndarray, min_side: float = 12,
                  max_dev: float = 4.0, max_bg: float = 3.0, near: int = 6) -> str | None:
    """What is wrong with output frame ``i`` (``after``) against its input (``before``), or None: a face in
    view not mosaicked (only the part in view counts, ``faces_to_check``), or the background changed
    beyond codec noise, away from where a face is within ``near`` frames (held and back-filled boxes reach
    there). One frame at a time, so a long clip can be checked while it streams."""
    for box, shown in faces_to_check(clip, i, min_side):
        if cell_deviation(before, box, shown=shown) <= 3 * max_dev:
            return f"frame {i}: input face {box} not textured?"
        dev = cell_deviation(after, box, shown=shown)
        if dev >= max_dev:
            return f"frame {i}: face {box} not mosaicked (deviation {dev:.1f})"
    # held / back-filled boxes may cover where a face was or will be within ttl frames (further back-filled)
    boxes = [b for j in range(max(0, i - 6), min(len(clip.boxes), i + near + 1)) for b in clip.boxes[j]]
    mask = background_mask(before.shape, boxes, pad=reach(boxes))
    if mask.any():
        diff = np.abs(before.astype(np.int16) - after.astype(np.int16))[mask].mean()
        if diff >= max_bg:
            return f"frame {i}: background changed by {diff:.2f} on average"
    return None


def check_redacted(clip: Clip, src: Path, out: Path, min_side: float = 12, max_dev: float = 4.0,
                   max_bg: float = 3.0) -> None:
    """Every ground-truth face in view is mosaicked in every frame (``frame_problem``); the rest is the
    input within codec noise."""
    a, b = decode_frames(src), decode_frames(out)
    assert len(a) == len(b) == len(clip.boxes)
    for i, (fa, fb) in enumerate(zip(a, b)):
        problem = frame_problem(clip, i, fa, fb, min_side, max_dev, max_bg)
        assert problem is None, problem


def style_difference(src: Path, out: Path, frames_json: list[dict], style: str, color=(0, 0, 0),
                     cell: int | str = 25) -> list[float]:
    """Per frame, the mean absolute difference inside the redacted cells between the output and the NumPy
    reference's ``style`` applied to the input frame with the boxes the run wrote (its JSON): codec noise
    where the run redacted in that style and colour; 0 for a frame with nothing redacted."""
    from trt_anon.redact import cell_sizes, pixel_mask, redact

    a, b = decode_frames(src), decode_frames(out)
    assert len(a) == len(b) == len(frames_json), (len(a), len(b), len(frames_json))
    diffs = []
    for fa, fb, rec in zip(a, b, frames_json):
        rounded = np.array(rec["redacted"], np.float32).reshape(-1, 4)
        best = []
        # the JSON's boxes are rounded to 0.1 px: where a box's size sits on a cell-size step (128.0 px may
        # have been 128.04, a coarser blur), the box as run is one of these
        for pad in (0.0, 0.05, -0.05):
            boxes = rounded + np.array([-pad, -pad, pad, pad], np.float32)
            cells = cell_sizes(boxes, cell, style)
            ref = redact(fa.copy(), boxes, style, cells, color)
            mask = pixel_mask(boxes, cells, *fa.shape[:2])
            best.append(float(np.abs(ref.astype(np.int16) - fb)[mask].mean()) if mask.any() else 0.0)
        diffs.append(min(best))
    return diffs


class NoRayCounter:
    """The progress counter a Ray segment reports to (``scale.run_segment``'s ``counter.add.remote(n)``), for
    running segments without Ray."""

    class add:
        @staticmethod
        def remote(n):
            pass
