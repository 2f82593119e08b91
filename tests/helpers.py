"""Reading outputs back, and the checks every end-to-end test makes on them."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from trt_anon.synth import Clip

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


def cell_deviation(frame: np.ndarray, box, cell: int = CELL) -> float:
    """Mean absolute deviation of the pixels in ``box`` from their mosaic cell's mean.

    ~0 when the region is mosaicked (codec noise aside); large for a real face.
    """
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    devs, n = 0.0, 0
    for cy in range(y1 // cell * cell, y2, cell):
        for cx in range(x1 // cell * cell, x2, cell):
            ya, yb = max(cy, y1), min(cy + cell, y2)
            xa, xb = max(cx, x1), min(cx + cell, x2)
            if yb <= ya or xb <= xa:
                continue
            # the deviation is measured over the whole cell, which must be constant if mosaicked
            block = frame[cy:min(cy + cell, frame.shape[0]), cx:min(cx + cell, frame.shape[1])].astype(np.float32)
            devs += np.abs(block - block.reshape(-1, 3).mean(0)).sum() / 3
            n += block.shape[0] * block.shape[1]
    return devs / max(n, 1)


def background_mask(shape, boxes, pad: int) -> np.ndarray:
    """True where a pixel is at least ``pad`` away from every box."""
    mask = np.ones(shape[:2], bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(0, int(y1) - pad):int(y2) + pad, max(0, int(x1) - pad):int(x2) + pad] = False
    return mask


def check_redacted(clip: Clip, src: Path, out: Path, min_side: float = 12, max_dev: float = 4.0,
                   max_bg: float = 3.0) -> None:
    """Every ground-truth face is mosaicked in every frame; the rest is the input within codec noise."""
    a, b = decode_frames(src), decode_frames(out)
    assert len(a) == len(b) == len(clip.boxes)
    for i, (fa, fb, boxes) in enumerate(zip(a, b, clip.boxes)):
        for box in boxes:
            if min(box[2] - box[0], box[3] - box[1]) < min_side:
                continue  # a sliver at the frame edge
            assert cell_deviation(fa, box) > 3 * max_dev, f"frame {i}: input face {box} not textured?"
            dev = cell_deviation(fb, box)
            assert dev < max_dev, f"frame {i}: face {box} not mosaicked (deviation {dev:.1f})"
        # held / back-filled boxes may cover where a face was or will be within ttl frames
        near = [b for j in range(max(0, i - 6), min(len(clip.boxes), i + 7)) for b in clip.boxes[j]]
        mask = background_mask(fa.shape, near, pad=3 * CELL)
        if mask.any():
            diff = np.abs(fa.astype(np.int16) - fb.astype(np.int16))[mask].mean()
            assert diff < max_bg, f"frame {i}: background changed by {diff:.2f} on average"


