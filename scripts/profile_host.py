"""Host-side time per frame of the GPU path's per-batch Python work, without a GPU.

    python scripts/profile_host.py            # 1080p, 32-frame batches: 3 faces, 20 faces, a close-up

What runs on the main thread between the detector's candidate copy and the kernels: NMS
(``centerface.to_detections``), the tracker, the redaction boxes and the mosaic's cell list
(``mosaic.cell_groups``). CPU time (process_time), best of 20, so a busy machine reads true.
At 1000 fps the GPU spends 1 ms per frame; all of this must stay far below that.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trt_anon.detect import centerface as cf  # noqa: E402
from trt_anon.redact import cell_sizes, redaction_boxes  # noqa: E402
from trt_anon.redact.cells import cell_groups  # noqa: E402
from trt_anon.track import Tracker  # noqa: E402

H, W, N = 1080, 1920, 32


def candidates(faces: int, size: float, rng) -> tuple:
    """What the detector hands the host: ~9 candidates per face (a 3x3 heatmap peak)."""
    n, boxes, score, lms = [], [], [], []
    x0, y0 = rng.uniform(0, W - size, faces), rng.uniform(0, H - size * 1.2, faces)
    for f in range(N):
        for x, y in zip(x0 + 2 * f, y0):
            for dx in (-2, 0, 2):
                for dy in (-2, 0, 2):
                    n.append(f)
                    boxes.append([x + dx, y + dy, x + dx + size, y + dy + size * 1.2])
                    score.append(0.9 - 0.01 * (abs(dx) + abs(dy)))
                    eye = [[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size]]
                    lms.append(eye + [[x + 0.5 * size, y + 0.6 * size]] * 3)
    return (np.array(n), np.array(boxes, np.float32), np.array(score, np.float32), np.array(lms, np.float32))


def best(fn, reps: int = 20) -> float:
    t_best = 1e9
    for _ in range(reps):
        t = time.process_time()
        fn()
        t_best = min(t_best, time.process_time() - t)
    return t_best / N * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    geom = cf.Geometry.fit(H, W, "auto")
    print(f"{'scene':24s} {'NMS':>7s} {'tracker':>8s} {'boxes':>7s} {'cells':>7s} {'total':>7s}  (ms/frame)")
    for name, faces, size in (("3 faces", 3, 100), ("20 faces", 20, 100), ("close-up", 1, 700)):
        cand = candidates(faces, size, rng)
        dets = cf.to_detections(*cand, N, geom)
        final = Tracker(0).push(dets)  # ttl 0: every frame final at once, same work per frame
        boxes = [redaction_boxes(d, "face", 12, 0.1, W, H) for d in final]
        t = {"NMS": best(lambda: cf.to_detections(*cand, N, geom)),
             "tracker": best(lambda: Tracker().push(dets)),
             "boxes": best(lambda: [redaction_boxes(d, "face", 12, 0.1, W, H) for d in final]),
             "cells": best(lambda: cell_groups(boxes, [cell_sizes(b, 25) for b in boxes], H, W))}
        print(f"{name:24s} " + " ".join(f"{v:7.3f} " for v in t.values()) + f"{sum(t.values()):7.3f}")


if __name__ == "__main__":
    main()
