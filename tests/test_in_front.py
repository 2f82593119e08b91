"""A face left visible (``--keep-face``, a track kept in review) in front of a redacted one: the wider margin the
face behind gets must not cover it, and the face behind stays covered as it would be alone. Real faces: Eileen
Collins' portrait drawn over Grace Hopper's, hiding a third of it, as a crowd or a presenter before passers-by
puts them."""
from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest
from synth import Face, hide, render

import trt_anon
from trt_anon import planar
from trt_anon.config import Config
from trt_anon.detect.detections import FILLED, HIT, Regions, grow
from trt_anon.redact import NumpyRedactor, box_margin, cell_sizes, pixel_mask, redaction_boxes

W, H = 480, 320


def scene():
    """(frame, boxes): Hopper's face (80 px) with hers (90 px) in front hiding 35 % of it from the right; the
    boxes a detector gives: hers whole, Hopper's the part that shows. Placed where the 25 px cells tell apart
    Hopper's box, the same with its own margin, and with the wider one."""
    behind = Face(80, (66, 80), source="hopper")
    front = hide(behind, Face(90, (66 + 2.5 * 80, 95)), 0.35, W, H)
    frame, gt, _ = next(render(W, H, [behind, front], 1))
    hopper, her = (np.asarray(b, np.float32) for b in gt)
    hopper[2] = min(hopper[2], her[0])  # found as the part in view
    return frame, np.stack([hopper, her])


def regions(boxes, scores, kept) -> Regions:
    n = len(boxes)
    return Regions(boxes, np.asarray(scores, np.float32), np.full(n, HIT, np.uint8), np.arange(n, dtype=np.int32),
                   boxes, kept=np.asarray(kept, bool))


def oval(box) -> np.ndarray:
    x1, y1, x2, y2 = box
    yy, xx = np.ogrid[:H, :W]
    dx, dy = (xx + 0.5 - (x1 + x2) / 2) / ((x2 - x1) / 2), (yy + 0.5 - (y1 + y2) / 2) / ((y2 - y1) / 2)
    return dx ** 2 + dy ** 2 <= 1


def anonymizer(config: Config, layout=None) -> trt_anon.Anonymizer:
    redactor = NumpyRedactor(config.mosaic_cell, config.style, config.fill_color, box_margin(config), layout)
    return trt_anon.Anonymizer(config, detector=object(), redactor=redactor, layout=layout)


def alone_cells(det: Regions, config: Config, k: int) -> np.ndarray:
    """The pixels that redacting face ``k`` covers as if no other face were near: its own margin, no more, in the
    cells it would have alone."""
    alone = grow(det.xyxy[k:k + 1], config.margin_px, config.margin_rel, W, H)
    return pixel_mask(alone, cell_sizes(alone, config.mosaic_cell, config.style, box_margin(config)), H, W)


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_a_face_in_front_is_put_back_where_the_margin_of_the_face_behind_covered_it(style):
    frame, boxes = scene()
    config = Config(style=style)
    det = regions(boxes, [0.6, 0.9], [False, True])  # hers kept, scoring higher: in front
    plain = anonymizer(config).redactor(frame[None].copy(), [redaction_boxes(det, "face", 12, 0.1, W, H)])[0]
    out, _ = anonymizer(config).redact(frame[None].copy(), [det])
    back = oval(boxes[1]) & ~alone_cells(det, config, 0)
    assert (plain[back] != frame[back]).any(), "the scene must have Hopper's margin over her face"
    if style == "mosaic":
        own = pixel_mask(det.xyxy[:1], 25, H, W)
        assert (oval(boxes[1]) & ~own & ~back).any(), "... and Hopper's own margin over it too"
    np.testing.assert_array_equal(out[0][back], frame[back])       # her face as it was
    np.testing.assert_array_equal(out[0][~back], plain[~back])     # all else as without her: Hopper's own box and
    assert (out[0][alone_cells(det, config, 0)] != frame[alone_cells(det, config, 0)]).any()  # its cells covered


@pytest.mark.parametrize("case", ["behind scores higher", "scores alike", "eyes"])
def test_nothing_is_put_back_where_the_visible_face_may_be_the_one_behind(case):
    """Which face is in front is read from the scores, as the redactor's wider margin does: where the redacted
    face scores as high or higher (it may be in front, its margin over the visible one), or only eye bands are
    covered, the frame is as without the carve (which, hers scoring higher, would have changed it). A third face
    scoring highest, beside Hopper's, gives Hopper's the wider margin in every case."""
    frame, boxes = scene()
    third = np.array([20, 70, 85, 150], np.float32)
    boxes = np.concatenate([boxes, third[None]])
    config = Config(target="eyes" if case == "eyes" else "face")
    scores = {"behind scores higher": [0.9, 0.6], "scores alike": [0.8, 0.8], "eyes": [0.6, 0.9]}[case]
    det = regions(boxes, [*scores, 0.95], [False, True, False])
    plain = anonymizer(config).redactor(frame[None].copy(), [redaction_boxes(det, config.target, config.margin_px,
                                                                             config.margin_rel, W, H)])[0]
    out, _ = anonymizer(config).redact(frame[None].copy(), [det])
    np.testing.assert_array_equal(out[0], plain)
    if case != "eyes":
        front = regions(boxes, [min(scores) - 0.1, max(scores), 0.95], [False, True, False])
        assert (anonymizer(config).redact(frame[None].copy(), [front])[0][0] != plain).any()


def test_a_redacted_face_in_front_of_the_visible_one_keeps_its_margin_there():
    """Three faces: hers kept between Hopper behind her (lower score) and a third face scoring higher whose margin
    reaches her too: only the margin of the one behind her is lifted from her face."""
    frame, boxes = scene()
    x1, y1, x2, y2 = boxes[1]
    third = np.array([x2 + 4, y1 + 10, x2 + 60, y1 + 80], np.float32)  # beside her, its margin over her right side
    boxes = np.concatenate([boxes, third[None]])
    config = Config()
    det = regions(boxes, [0.6, 0.9, 0.95], [False, True, False])
    grown = redaction_boxes(det, "face", 12, 0.1, W, H)
    plain = anonymizer(config).redactor(frame[None].copy(), [grown])[0]
    out, _ = anonymizer(config).redact(frame[None].copy(), [det])
    third_cover = pixel_mask(grown[1:], cell_sizes(grown, 25, "mosaic", (12, 0.1))[1:], H, W)
    assert (third_cover & oval(boxes[1])).any()
    np.testing.assert_array_equal(out[0][third_cover], plain[third_cover])
    back = oval(boxes[1]) & ~alone_cells(det, config, 0) & ~third_cover
    assert (plain[back] != frame[back]).any()
    np.testing.assert_array_equal(out[0][back], frame[back])


def test_on_the_decoders_planes_the_face_in_front_is_put_back_too():
    """4:2:0 rows as the CPU path keeps them: her luma samples as decoded; a chroma sample only where all four luma
    samples it stands for are put back; the rest as redacted without the carve."""
    frame, boxes = scene()
    config = Config()
    vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
    layout = planar.Planar.of(vf)
    rows = layout.empty(1)
    layout.read(vf, rows[0])
    det = regions(boxes, [0.6, 0.9], [False, True])
    anon = anonymizer(config, layout)
    plain = anon.redactor(rows.copy(), [redaction_boxes(det, "face", 12, 0.1, W, H)])[0]
    out, _ = anon.redact(rows.copy(), [det])
    back = oval(boxes[1]) & ~alone_cells(det, config, 0)
    for src, ref, got, (sy, sx) in zip(layout.planes(rows[0]), layout.planes(plain), layout.planes(out[0]),
                                       layout.shifts):
        m = back.reshape(H >> sy, 1 << sy, W >> sx, 1 << sx).all(axis=(1, 3))
        assert (ref[m] != src[m]).any()
        np.testing.assert_array_equal(got[m], src[m])
        np.testing.assert_array_equal(got[~m], ref[~m])


def test_a_region_added_by_hand_over_the_visible_face_stays_covered():
    """A review's added region (after the faces' boxes, as ``decisions.Replayed`` lists them) is never put back."""
    frame, boxes = scene()
    config = Config()
    det = regions(boxes, [0.6, 0.9], [False, True])
    x1, y1, x2, y2 = boxes[1]
    added = np.array([[x1, (y1 + y2) / 2, (x1 + x2) / 2, y2]], np.float32)   # the lower left quarter of her face
    drawn = np.concatenate([redaction_boxes(det, "face", 12, 0.1, W, H), added])
    anon = anonymizer(config)
    anon.boxes = lambda final, height, width: [drawn]
    plain = anon.redactor(frame[None].copy(), [drawn])[0]
    out, _ = anon.redact(frame[None].copy(), [det])
    hand = pixel_mask(added, cell_sizes(drawn, 25, "mosaic", (12, 0.1))[1:], H, W)
    assert (hand & oval(boxes[1])).any()
    np.testing.assert_array_equal(out[0][hand], plain[hand])
    assert (out[0] != plain).any()  # the rest of her face put back


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_a_face_behind_is_never_covered_less_than_alone(style):
    """Random scenes (her face over Hopper's, 40-240 px, their cells 25 to 75 px and blur's finer steps, which
    do not nest): what is put back lies in her oval and never where Hopper's face would be redacted on its own."""
    rng = np.random.default_rng(7)
    config = Config(style=style)
    put_back = 0
    for _ in range(40):
        sb, sf = rng.uniform(40, 240, 2)
        behind = Face(sb, (rng.uniform(0, W - sb), rng.uniform(0, max(1.0, H - 1.2 * sb))), source="hopper")
        front = Face(sf, (behind.start[0] + rng.uniform(-0.9, 0.9) * sb, behind.start[1] + rng.uniform(-0.5, 0.5) * sb))
        frame, gt, _ = next(render(W, H, [behind, front], 1))
        if len(gt) < 2:
            continue
        boxes = np.stack([np.asarray(g, np.float32) for g in gt])
        det = regions(boxes, [0.5, 0.9], [False, True])
        plain = anonymizer(config).redactor(frame[None].copy(), [redaction_boxes(det, "face", 12, 0.1, W, H)])[0]
        out, _ = anonymizer(config).redact(frame[None].copy(), [det])
        back = (out[0] != plain).any(axis=2)
        put_back += int(back.any())
        assert not (back & alone_cells(det, config, 0)).any()
        assert not (back & ~oval(boxes[1])).any()
    assert put_back >= 5  # (the scenes do put some back)


def test_a_face_out_of_the_frame_or_a_visible_face_not_found_puts_nothing_back():
    """A redacted face's box wholly out of the frame (back-filled as it enters) has no redaction box, so which box is
    whose is not known (a review's added region after them fills its count); and a visible face back-filled before
    it was found (its box a guess) is not put back: the frame is as without the carve, and nothing fails."""
    frame, boxes = scene()
    off = np.array([[-200, 40, -120, 130]], np.float32)
    added = np.array([[400, 250, 470, 310]], np.float32)
    config = Config()
    for boxes_, kinds, kept in ((np.concatenate([boxes, off]), [HIT, HIT, HIT], [False, True, False]),
                                (boxes, [HIT, FILLED], [False, True])):
        det = dataclasses.replace(regions(boxes_, [0.6, 0.9, 0.5][:len(boxes_)], kept), kind=np.array(kinds, np.uint8))
        drawn = np.concatenate([redaction_boxes(det, "face", 12, 0.1, W, H), added])
        anon = anonymizer(config)
        anon.boxes = lambda final, height, width: [drawn]
        plain = anon.redactor(frame[None].copy(), [drawn])[0]
        out, _ = anon.redact(frame[None].copy(), [det])
        np.testing.assert_array_equal(out[0], plain)
    det = regions(boxes, [0.6, 0.9], [False, True])  # (found: put back)
    assert (anon.redact(frame[None].copy(), [det])[0][0] != plain).any()
