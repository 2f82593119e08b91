"""Redact stage: boxes in, frames redacted in place, in a style from ``styles.STYLES`` (mosaic, blur, solid).
NumPy is the reference; the GPU redactor (gpu.py) runs each style's kernels, which must equal it."""
from __future__ import annotations

import numpy as np

from ..detect.detections import HELD, HIT, Regions, grow
from .cells import cell_mask, cell_ranges, face_cells, pixel_mask
from .styles import STYLES
from .styles.blur import blur
from .styles.mosaic import mosaic
from .styles.solid import fill_value, solid

__all__ = ["select_redactor", "NumpyRedactor", "redaction_boxes", "uncovered", "redact", "mosaic", "blur", "solid",
           "cell_mask", "cell_ranges", "pixel_mask", "cell_sizes", "box_margin", "face_margins", "STYLES"]


# Extra margin, as a fraction of the box per side, for a face box whose margin-grown box meets a better-scored
# one's: the face half behind another is found smaller than it is (down to 0.65 of its height, measured) and
# scores lower, and the part of it that shows runs past its box (scripts/eval.py, hidden_* clips).
OVERLAP_MARGIN = 0.15


def redaction_boxes(det: Regions, target: str, margin_px: float, margin_rel: float,
                    width: int, height: int, only: np.ndarray | None = None) -> np.ndarray:
    """The boxes to redact for one frame: grown face boxes (more for the lower-scored where two meet), or the
    (grown) eye bands. ``only`` (a mask of the faces): those faces' boxes, grown as among all of them; by default
    every face not left visible (``Regions.kept``)."""
    if only is None and det.kept.any():
        only = ~det.kept
    if only is not None and not np.all(only):  # the margins come from every face; the boxes from those asked
        mask = np.asarray(only, bool)
        if target == "eyes":
            return redaction_boxes(det.subset(mask), target, margin_px, margin_rel, width, height)
        rel = face_margins(det, margin_px, margin_rel)
        return grow(det.xyxy[mask], margin_px, rel[mask], width, height)
    if target == "eyes":
        return grow(det.eyes, margin_px / 2, 0.0, width, height)
    return grow(det.xyxy, margin_px, face_margins(det, margin_px, margin_rel), width, height)


def uncovered(det: Regions, boxes: np.ndarray, target: str, cell, style: str, margin: tuple[float, float],
              height: int, width: int) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Where a face left visible (``Regions.kept``) is in front of a redacted one, the part of it that the other's
    extra margin covers, to be put back after redaction: ``(y0, y1, x0, x1, mask)`` per visible face, a boolean
    mask of the frame's rows y0:y1 and columns x0:x1 (even, for subsampled chroma).

    ``boxes``: the frame's redaction boxes, first those of the redacted faces in order, then any others;
    ``margin``: (pixels, fraction) per side, every face's own margin. A face that meets a better-scored one
    gets ``OVERLAP_MARGIN`` more, as the face half behind it, found smaller than it is. Over the visible face it
    is behind, that extra covers the visible face itself: there the visible face's oval (the ellipse in its box;
    not the corners, which may show what is beside it) is put back, but never what the other face would cover
    alone (its box with its own margin, in the cells it would have alone). A redacted face scoring as
    high or higher (which may be in front) keeps all of it. Only a visible face found or followed between two
    looks (not one back-filled before it was found, nor a weak one) is put back: its box is the face's own."""
    kept = np.asarray(det.kept, bool) & np.isin(det.kind, (HIT, HELD))
    hidden = np.flatnonzero(~np.asarray(det.kept, bool))
    if target == "eyes" or not kept.any() or not len(hidden) or len(boxes) < len(hidden):
        return []
    b = np.asarray(det.xyxy[hidden], np.float32)
    inside = (np.minimum(b[:, 2], width) > np.maximum(b[:, 0], 0)) & \
             (np.minimum(b[:, 3], height) > np.maximum(b[:, 1], 0))
    if not inside.all():  # (a box out of the frame has no row in ``boxes``: which row is whose is not known)
        return []
    cells = cell_sizes(boxes, cell, style, margin)
    reach = np.asarray(boxes, np.float64) + np.asarray(cells, np.float64)[:, None] * [-1, -1, 1, 1]  # whole cells
    alone = grow(b, margin[0], margin[1], width, height)
    alone_cells = cell_sizes(alone, cell, style, margin)
    out = []
    for k in np.flatnonzero(kept):
        x1, y1, x2, y2 = (float(v) for v in det.xyxy[k])
        x0, y0 = max(0, int(np.floor(x1)) & ~1), max(0, int(np.floor(y1)) & ~1)
        xe, ye = min(width, (int(np.ceil(x2)) + 1) & ~1), min(height, (int(np.ceil(y2)) + 1) & ~1)
        if xe <= x0 or ye <= y0 or not np.any((reach[:, 0] < xe) & (reach[:, 2] > x0) &
                                              (reach[:, 1] < ye) & (reach[:, 3] > y0)):
            continue  # no redaction reaches it
        behind = det.score[hidden] < det.score[k]
        rest = np.ones(len(boxes), bool)  # covered as redacted: all but the faces behind it, covered as if alone
        rest[:len(hidden)] = ~behind
        window = (y0, ye, x0, xe)
        blocked = pixel_mask(np.asarray(boxes)[rest], cells[rest], height, width, window) | \
            pixel_mask(alone[behind], alone_cells[behind], height, width, window)
        yy, xx = np.ogrid[y0:ye, x0:xe]
        rx, ry = max((x2 - x1) / 2, 1e-3), max((y2 - y1) / 2, 1e-3)
        oval = ((xx + 0.5 - (x1 + x2) / 2) / rx) ** 2 + ((yy + 0.5 - (y1 + y2) / 2) / ry) ** 2 <= 1
        mask = oval & ~blocked
        if mask.any():
            out.append((y0, ye, x0, xe, mask))
    return out


def face_margins(det: Regions, margin_px: float, margin_rel: float) -> np.ndarray:
    """The relative margin of each face box: ``margin_rel``, more for a face that meets a better-scored one."""
    rel = np.full(len(det), margin_rel, np.float32)
    if len(det) > 1:
        b = det.xyxy.astype(np.float32)
        dx = margin_px + margin_rel * (b[:, 2] - b[:, 0])
        dy = margin_px + margin_rel * (b[:, 3] - b[:, 1])
        g = np.stack([b[:, 0] - dx, b[:, 1] - dy, b[:, 2] + dx, b[:, 3] + dy], axis=1)
        meet = (np.minimum(g[:, None, 2], g[None, :, 2]) > np.maximum(g[:, None, 0], g[None, :, 0])) & \
               (np.minimum(g[:, None, 3], g[None, :, 3]) > np.maximum(g[:, None, 1], g[None, :, 1]))
        behind = meet & (det.score[:, None] < det.score[None, :])  # meets a face that scores higher
        rel[behind.any(axis=1)] += OVERLAP_MARGIN
    return rel


def cell_sizes(boxes: np.ndarray, mosaic_cell: int | str, style: str = "mosaic",
               margin: tuple[float, float] = (12, 0.1)) -> np.ndarray:
    """One cell size per box, for every style: ``mosaic_cell`` or coarser for large faces (``face_cells``;
    ``margin``: what the boxes were grown by), as the style takes them (the blur's are coarser still).
    ``pixel_mask(boxes, cell_sizes(...))`` is what a style covers. "auto", which older callers pass, is 25."""
    return STYLES[style].cells(boxes, face_cells(boxes, 25 if mosaic_cell == "auto" else int(mosaic_cell), margin))


def box_margin(config) -> tuple[float, float]:
    """The (pixels, fraction) per side ``redaction_boxes`` grows boxes by for ``config``'s target."""
    return (config.margin_px / 2, 0.0) if config.target == "eyes" else (config.margin_px, config.margin_rel)


def redact(frame: np.ndarray, boxes: np.ndarray, style: str, cell, color: tuple[int, int, int] = (0, 0, 0)):
    """Redact one RGB frame in place with ``style`` over the cells (one size, or one per box) touching ``boxes``."""
    return STYLES[style].redact(frame, boxes, cell, fill_value(color, frame.dtype))


class NumpyRedactor:
    """The styles' references on the CPU, on RGB frames or, with ``layout`` (``planar.Planar``), on planar rows:
    each plane redacted on the same cells (a chroma plane's cells are its luma cells' own samples), so a cell's
    mean is the YUV of its mean colour up to rounding, the fill colour is converted once with the stream's matrix
    and range, and no sample outside the cells is touched."""

    name = "numpy"

    def __init__(self, cell: int, style: str = "mosaic", color: tuple[int, int, int] = (0, 0, 0),
                 margin: tuple[float, float] = (12, 0.1), layout=None) -> None:
        self.cell, self.style, self.color, self.margin, self.layout = cell, style, color, margin, layout
        if layout is not None:  # (plane, shift, fill) for each of Y, U and V
            self.planes = layout.shifts, layout.fill(color)

    def __call__(self, frames: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        style = STYLES[self.style]
        for frame, b in zip(frames, boxes):
            cells = cell_sizes(b, self.cell, self.style, self.margin)
            if self.layout is None:
                style.redact(frame, b, cells, fill_value(self.color, frame.dtype))
                continue
            for plane, shift, fill in zip(self.layout.planes(frame), *self.planes):
                style.redact(plane[..., None], b, cells, (fill,), shift)
        return frames


def select_redactor(config, gpu: bool, layout=None):
    """The redactor for the frames the decoder hands out: the GPU's (RGB on the device), or the NumPy one, on
    RGB or on ``layout``'s planar rows."""
    if gpu:
        from .gpu import CupyRedactor
        return CupyRedactor(config.mosaic_cell, config.style, config.fill_color, box_margin(config))
    return NumpyRedactor(config.mosaic_cell, config.style, config.fill_color, box_margin(config), layout)
