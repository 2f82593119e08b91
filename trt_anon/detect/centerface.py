"""CenterFace (MIT): everything that is not a framework call, shared by every detector runtime.

Input geometry, the packaged model and its hash (``MODEL``), and the decoding of the four output maps.
``decode_candidates`` takes NumPy or CuPy arrays (``xp``), so the GPU backends run the same
code on the device and copy only the candidate boxes (a few KB) to the host for NMS.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import DetectorError
from .detections import HIT, WEAK, Detections, nms
from .model import Model

INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, log-scale, offset, landmarks
STRIDE = 4
ALIGN = 32
NMS_IOU = 0.3      # candidates overlapping this much are one face ...
NMS_SAME_EYES = 0.6  # ... when their eye midpoints are closer than this many eye distances
NMS_ALWAYS = 0.5  # ... and always from this IoU up (duplicates of one face at the border reach 0.53)
MIN_FACE_AT_INPUT = 16   # px: CenterFace finds faces this wide at threshold 0.2 (measured, docs/quality.md)
MIN_FACE = 24            # px: the smallest face "auto" is sized to find in the original frame
GPU_AUTO_LONG_SIDE = 2560  # px: on a GPU "auto" detects at full resolution up to this long side (1440p)


@dataclass(frozen=True)
class Geometry:
    """How a frame maps onto the detector input: scaled by ``scale``, padded bottom/right."""

    frame_h: int
    frame_w: int
    in_h: int       # padded network input, multiples of 32
    in_w: int
    resized_h: int  # the frame's size inside the input before padding
    resized_w: int
    scale: float    # input pixels per frame pixel

    @classmethod
    def fit(cls, frame_h: int, frame_w: int, det_size: int | str) -> "Geometry":
        """Fit the long side to ``det_size`` (never upscale past the frame), keep aspect, pad to 32.

        "auto" scales by exactly MIN_FACE_AT_INPUT / MIN_FACE (no less than 640 on the long side):
        1280x720 -> 853x480 in a 864x480 input, 1920x1080 -> 1280x720 in 1280x736.
        "auto-gpu" (what "auto" means on a GPU, which has compute to spare) is the full frame up to
        GPU_AUTO_LONG_SIDE, and "auto" beyond: small faces are found far more often (docs/quality.md).
        """
        long_side = max(frame_h, frame_w)
        if det_size == "auto-gpu":
            scale = min(1.0, max(MIN_FACE_AT_INPUT / MIN_FACE, GPU_AUTO_LONG_SIDE / long_side))
        elif det_size == "auto":
            scale = min(1.0, max(MIN_FACE_AT_INPUT / MIN_FACE, 640 / long_side))
        else:
            scale = min(det_size / long_side, 1.0)
        rh, rw = max(1, round(frame_h * scale)), max(1, round(frame_w * scale))
        in_h, in_w = -(-rh // ALIGN) * ALIGN, -(-rw // ALIGN) * ALIGN
        return cls(frame_h, frame_w, in_h, in_w, rh, rw, scale)


def decode_candidates(heatmap, scale, offset, landmarks, threshold: float, geom: Geometry, xp=np):
    """Turn the four output maps of a batch into candidate boxes, in frame pixels.

    Returns (frame_index, boxes (K,4), scores (K,), landmarks (K,5,2)) as ``xp`` arrays.
    Every heatmap cell above ``threshold`` is a candidate (a face gives a few); NMS on the
    host keeps the best of each cluster.
    """
    heat = heatmap[:, 0]
    n, y, x = xp.nonzero(heat > threshold)
    score = heat[n, y, x]
    s_h = xp.exp(scale[n, 0, y, x]) * STRIDE
    s_w = xp.exp(scale[n, 1, y, x]) * STRIDE
    cy = (y + offset[n, 0, y, x] + 0.5) * STRIDE
    cx = (x + offset[n, 1, y, x] + 0.5) * STRIDE
    x1, y1 = cx - s_w / 2, cy - s_h / 2
    boxes = xp.stack([x1, y1, x1 + s_w, y1 + s_h], axis=1)
    lm_y = landmarks[n, 0::2, y, x] * s_h[:, None] + y1[:, None]  # (K, 5)
    lm_x = landmarks[n, 1::2, y, x] * s_w[:, None] + x1[:, None]
    lms = xp.stack([lm_x, lm_y], axis=2)
    inv = 1.0 / geom.scale
    return n, (boxes * inv).astype(xp.float32), score.astype(xp.float32), (lms * inv).astype(xp.float32)


# Weak candidates: scores from WEAK_FRACTION x threshold up to the threshold come back
# flagged WEAK; the tracker lets them only continue a track (docs/quality.md, the start of a track).
WEAK_FRACTION = 0.5


def detections(maps, threshold: float, geom: Geometry, xp=np) -> list[Detections]:
    """The four output maps of a batch (NumPy or CuPy) -> one Detections per frame, on the host.

    Candidates down to ``WEAK_FRACTION * threshold`` are kept, kind WEAK below ``threshold``.
    Decoding runs where the maps are; only the candidate boxes are copied to the host.
    """
    host = xp.asnumpy if hasattr(xp, "asnumpy") else np.asarray
    candidates = decode_candidates(*maps, threshold * WEAK_FRACTION, geom, xp=xp)
    return [dataclasses.replace(d, kind=np.where(d.score < threshold, WEAK, HIT).astype(np.uint8))
            for d in to_detections(*(host(a) for a in candidates), len(maps[0]), geom)]


def to_detections(n, boxes, score, lms, batch: int, geom: Geometry) -> list[Detections]:
    """Host side: split candidates per frame, NMS, clip to the frame."""
    n, boxes, score, lms = (np.asarray(a) for a in (n, boxes, score, lms))
    if not (np.isfinite(boxes).all() and np.isfinite(lms).all()):
        raise DetectorError("detector produced non-finite boxes")
    out = []
    for i in range(batch):
        sel = np.flatnonzero(n == i)
        if len(sel) == 0:
            out.append(Detections.empty())
            continue
        keep = sel[nms(boxes[sel], score[sel], NMS_IOU, lms[sel], NMS_SAME_EYES, NMS_ALWAYS)]
        b = boxes[keep].copy()
        np.clip(b[:, 0::2], 0, geom.frame_w, out=b[:, 0::2])
        np.clip(b[:, 1::2], 0, geom.frame_h, out=b[:, 1::2])
        out.append(Detections(b, score[keep], lms[keep]))
    return out


# FP32 is the network every runtime starts from (the GPU ones build FP16 from it); INT8 is its calibrated
# quantization for the CPU (scripts/quantize_model.py), ~2x faster there. Thresholds measured by scripts/eval.py
# (INT8 scores run a little higher; FP32's also stands for the GPU's FP16 networks).
MODEL = Model(
    name="centerface", finds="face",
    files={"fp32": ("centerface.onnx", "ccadfc6a4ab52ffe5e10988422c26456fdc95419d7722eaa7c5fb99a28f61946"),
           "int8": ("centerface_int8.onnx", "563728944b3c5c02f6ca1334429130855be927ce49fdc430224bb3c8fa160aae")},
    thresholds={"fp32": 0.15, "int8": 0.2},
    input_name=INPUT_NAME, output_names=OUTPUT_NAMES, decode=detections)
