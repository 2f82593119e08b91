"""The NumPy mosaic is the reference every redactor is held to: test it cell by cell."""
import numpy as np
import pytest

from trt_anon.redact import cell_mask, mosaic


def brute_force(frame, boxes, cell):
    """Pixel-by-pixel statement of the definition in mosaic.py."""
    out = frame.copy()
    h, w = frame.shape[:2]
    touched = set()
    for x1, y1, x2, y2 in boxes:
        for y in range(max(0, int(np.floor(y1))), min(h, int(np.ceil(y2)))):
            for x in range(max(0, int(np.floor(x1))), min(w, int(np.ceil(x2)))):
                touched.add((y // cell, x // cell))
    for cy, cx in touched:
        block = frame[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell].astype(np.int64)
        n = block.shape[0] * block.shape[1]
        out[cy * cell:(cy + 1) * cell, cx * cell:(cx + 1) * cell] = (block.sum((0, 1)) + n // 2) // n
    return out


@pytest.mark.parametrize("cell", [25, 8, 7])
def test_matches_definition_random(cell):
    rng = np.random.default_rng(cell)
    frame = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)  # sides not multiples of the cell
    for _ in range(20):
        x1, y1 = rng.uniform(-20, 130), rng.uniform(-20, 96)
        boxes = np.array([[x1, y1, x1 + rng.uniform(0.5, 60), y1 + rng.uniform(0.5, 60)],
                          [x1 + 10, y1 + 5, x1 + 40, y1 + 30]])
        expected = brute_force(frame, boxes, cell)
        got = mosaic(frame.copy(), boxes, cell)
        np.testing.assert_array_equal(got, expected)


def test_cells_are_frame_aligned_and_constant():
    frame = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    out = mosaic(frame.copy(), np.array([[30, 30, 40, 40]]), 25)
    block = out[25:50, 25:50]
    assert (block == block[0, 0]).all()
    assert (out[:25] == frame[:25]).all() and (out[50:] == frame[50:]).all()
    assert (out[:, :25] == frame[:, :25]).all() and (out[:, 50:] == frame[:, 50:]).all()


def test_box_edge_on_a_cell_boundary_does_not_spill():
    frame = np.random.default_rng(1).integers(0, 256, (50, 100, 3), dtype=np.uint8)
    out = mosaic(frame.copy(), np.array([[25, 0, 50, 25]]), 25)  # exactly one cell
    assert (out[:25, 25:50] == out[0, 25]).all()
    assert (out[:, 50:] == frame[:, 50:]).all() and (out[25:] == frame[25:]).all()
    assert cell_mask(np.array([[25, 0, 50, 25]]), 25, 50, 100).sum() == 1


def test_partial_edge_cells_use_their_own_pixels():
    frame = np.zeros((30, 30, 3), np.uint8)
    frame[25:, 25:] = 200  # the 5x5 corner cell
    out = mosaic(frame.copy(), np.array([[26, 26, 30, 30]]), 25)
    assert (out[25:, 25:] == 200).all() and (out[:25] == 0).all()


def test_rounding_is_half_up():
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0, 0] = 1
    frame[0, 1] = 1  # mean 0.5 -> 1
    out = mosaic(frame.copy(), np.array([[0, 0, 1, 1]]), 2)
    assert (out == 1).all()


def test_empty_and_outside_boxes_change_nothing():
    frame = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    boxes = np.array([[50, 50, 60, 60], [-10, -10, 0, 0], [10, 10, 10, 20]], np.float32)
    np.testing.assert_array_equal(mosaic(frame.copy(), boxes, 25), frame)
    np.testing.assert_array_equal(mosaic(frame.copy(), np.zeros((0, 4)), 25), frame)


def test_overlapping_boxes_order_does_not_matter():
    frame = np.random.default_rng(3).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    a, b = [5, 5, 70, 60], [40, 30, 110, 115]
    np.testing.assert_array_equal(mosaic(frame.copy(), np.array([a, b]), 25),
                                  mosaic(frame.copy(), np.array([b, a]), 25))


def test_the_lower_scored_of_two_faces_that_meet_gets_more_margin():
    """A face half behind another is found smaller than it is and scores lower: its box grows by
    OVERLAP_MARGIN more per side; the face in front, and faces apart, keep the usual margin."""
    from trt_anon.detect.detections import Regions
    from trt_anon.redact import OVERLAP_MARGIN, redaction_boxes

    boxes = np.array([[100, 100, 200, 230], [215, 110, 300, 220], [600, 100, 700, 230]], np.float32)
    det = Regions(boxes, np.array([0.9, 0.3, 0.2], np.float32), np.zeros(3, np.uint8), np.arange(3), boxes)
    got = redaction_boxes(det, "face", 12, 0.1, 1280, 720)
    usual = redaction_boxes(det.subset([0, 2]), "face", 12, 0.1, 1280, 720)
    np.testing.assert_allclose(got[[0, 2]], usual)   # in front (higher score) / alone: as ever
    w, h = 85, 110
    rel = 0.1 + OVERLAP_MARGIN
    np.testing.assert_allclose(got[1], [215 - 12 - rel * w, 110 - 12 - rel * h, 300 + 12 + rel * w, 220 + 12 + rel * h],
                               rtol=1e-6)
