"""CenterFace decoding, geometry, NMS and the packaged model (shared by every backend)."""
import numpy as np
import pytest

from trt_anon.detect import centerface as cf
from trt_anon.detect.detections import CLASSES, HELD, HIT, Detections, Regions, eye_band, grow, iou, nms
from trt_anon.errors import DetectorError


def test_geometry_fits_long_side_and_pads_to_32():
    g = cf.Geometry.fit(720, 1280, 640)
    assert (g.resized_h, g.resized_w, g.in_h, g.in_w, g.scale) == (360, 640, 384, 640, 0.5)
    g = cf.Geometry.fit(1080, 1920, 640)
    assert (g.in_h, g.in_w) == (384, 640) and g.resized_h == 360
    g = cf.Geometry.fit(300, 200, 640)  # never upscale
    assert (g.scale, g.in_h, g.in_w) == (1.0, 320, 224)
    g = cf.Geometry.fit(1920, 1080, 640)  # portrait
    assert (g.in_h, g.in_w) == (640, 384)


def test_decode_candidates_recovers_a_known_box():
    geom = cf.Geometry.fit(200, 400, 200)  # scale 0.5 -> input 224 x 128 (padded), maps 32 x 56
    h, w = geom.in_h // cf.STRIDE, geom.in_w // cf.STRIDE  # the output maps
    heat = np.zeros((2, 1, h, w), np.float32)
    scale = np.zeros((2, 2, h, w), np.float32)
    offset = np.zeros((2, 2, h, w), np.float32)
    lms = np.zeros((2, 10, h, w), np.float32)
    heat[1, 0, 10, 20] = 0.9
    scale[1, :, 10, 20] = np.log([40 / 4, 20 / 4])     # 40 px tall, 20 px wide at the input
    offset[1, :, 10, 20] = [0.25, -0.25]
    lms[1, 0:2, 10, 20] = [0.5, 0.25]                   # left eye (y, x) as fractions of h, w
    n, boxes, score, lm = cf.decode_candidates(heat, scale, offset, lms, 0.5, geom)
    dets = cf.to_detections(n, boxes, score, lm, 2, geom)
    assert len(dets[0]) == 0 and len(dets[1]) == 1
    cy, cx = (10 + 0.25 + 0.5) * 4, (20 - 0.25 + 0.5) * 4
    expected = np.array([cx - 10, cy - 20, cx + 10, cy + 20]) * 2  # back to frame pixels
    np.testing.assert_allclose(dets[1].xyxy[0], expected, atol=1e-3)
    np.testing.assert_allclose(dets[1].landmarks[0, 0], [(cx - 10 + 0.25 * 20) * 2, (cy - 20 + 0.5 * 40) * 2],
                               atol=1e-3)
    assert dets[1].score[0] == pytest.approx(0.9)


def test_nms_keeps_best_of_each_cluster():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.3, 0.4], np.float32), 0.3)
    assert list(keep) == [1, 2]


def test_iou_and_grow():
    assert iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
    g = grow(np.array([[100, 100, 200, 150]]), 12, 0.1, 205, 400)
    np.testing.assert_allclose(g, [[78, 83, 205, 167]])


def test_eye_band_covers_both_eyes():
    lm = np.array([[[100, 100], [140, 104], [120, 120], [105, 140], [135, 140]]], np.float32)
    (x1, y1, x2, y2), = eye_band(lm)
    assert x1 < 100 - 20 and x2 > 140 + 20 and y1 < 100 - 15 and y2 > 104 + 15 and y2 < 135  # above the mouth


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_detector_finds_the_astronaut(precision):
    from skimage import data
    from synth import FACE

    from trt_anon.detect.onnxrt import OnnxRuntimeDetector

    det = OnnxRuntimeDetector(640, 0.2, precision=precision)
    img = data.astronaut()
    out = det(np.stack([img, img[:, ::-1].copy(), np.zeros_like(img)]))
    assert iou(out[0].xyxy, np.array([FACE]))[0, 0] > 0.6
    mirrored = (512 - FACE[2], FACE[1], 512 - FACE[0], FACE[3])
    assert iou(out[1].xyxy, np.array([mirrored]))[0, 0] > 0.6
    assert len(out[2]) == 0
    le, re = out[0].landmarks[0, 0], out[0].landmarks[0, 1]
    assert 190 < le[0] < 215 and 235 < re[0] < 260 and 90 < le[1] < 115


def test_tampered_model_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "centerface.onnx"
    bad.write_bytes(cf.MODEL.path().read_bytes()[:-10] + b"0123456789")
    monkeypatch.setattr(type(cf.MODEL), "path", lambda self, precision="fp32": bad)
    with pytest.raises(DetectorError, match="SHA-256"):
        cf.MODEL.read()


def test_regions_json():
    box = np.array([[1, 2, 3, 4]], np.float32)
    d = Regions(box, np.array([0.5], np.float32), np.array([HELD], np.uint8), np.array([7]), box + 0.04)
    assert d.to_json() == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "kind": "held", "eyes": [1.0, 2.0, 3.0, 4.0],
                            "track": 7}]


def test_int8_model_tracks_fp32():
    """The quantized model is the FP32 network within INT8 rounding: same faces, close scores and boxes."""
    from synth import Face, render

    from trt_anon.detect.onnxrt import OnnxRuntimeDetector

    faces = [Face(w, (40 + 210 * k, 60 + 100 * (k % 3)), source=s)
             for k, (w, s) in enumerate([(30, "astronaut"), (48, "hopper"), (80, "lfw:3"), (140, "astronaut")])]
    frames = np.stack([f for f, _, _ in render(1280, 720, faces, 2)])
    fp32 = OnnxRuntimeDetector("auto", 0.15, precision="fp32")(frames)
    int8 = OnnxRuntimeDetector("auto", 0.15, precision="int8")(frames)
    for a, b in zip(fp32, int8):
        assert len(a) == len(b) >= 3
        match = iou(a.xyxy, b.xyxy).argmax(axis=1)
        assert (iou(a.xyxy, b.xyxy).max(axis=1) > 0.8).all()
        assert np.abs(a.score - b.score[match]).max() < 0.15  # the heatmap output is quantized too


def test_detections_are_checked_and_immutable():
    """One row per face in every array, checked when made; no stage can change another's boxes."""
    import dataclasses

    from trt_anon.detect.detections import Detections

    box, score, lms = np.zeros((2, 4), np.float32), np.ones(2, np.float32), np.zeros((2, 5, 2), np.float32)
    d = Detections(box, score, lms)
    assert d.kind.tolist() == [0, 0]
    for bad in ({"score": np.ones(3, np.float32)}, {"landmarks": np.zeros((2, 4, 2))},
                {"class_id": np.zeros(1, np.uint8)}, {"kind": np.zeros(1, np.uint8)}, {"xyxy": np.zeros((2, 3))}):
        with pytest.raises(ValueError, match="Detections"):
            dataclasses.replace(d, **bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.kind = np.ones(2, np.uint8)
    assert len(Detections.empty()) == 0


def test_classes_are_known_and_regions_checked_when_made():
    """A box's class indexes CLASSES (faces by default, not named in the JSON); the tracker's regions are
    checked as the detector's boxes are."""
    box, score, lms = np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.zeros((1, 5, 2))
    assert Detections(box, score, lms).class_id.tolist() == [0]
    with pytest.raises(ValueError, match="Detections.class_id must index"):
        Detections(box, score, lms, class_id=np.array([len(CLASSES)]))
    r = Regions(box, score, np.array([HIT], np.uint8), np.array([3]), box)
    assert r.class_id.tolist() == [0] and "class" not in r.to_json()[0]
    with pytest.raises(ValueError, match="Regions.eyes must be"):
        Regions(box, score, np.array([HIT], np.uint8), np.array([3]), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="Regions.class_id must index"):
        Regions(box, score, np.array([HIT], np.uint8), np.array([3]), box, np.array([len(CLASSES)]))
    assert len(r.subset(np.array([False]))) == 0 and len(Regions.empty()) == 0


def test_stage_implementations_fit_the_loop(tmp_path):
    """The loop takes any detector, redactor and sink with the methods its protocols name: the CPU ones here
    (the GPU ones are checked the same way where they run, tests/test_kernels_on_cpu.py), and a stand-in
    without ``encode`` is not a sink."""
    import io
    from fractions import Fraction

    import av

    from trt_anon.config import Config
    from trt_anon.detect import select_detector
    from trt_anon.encode import PyAVEncoder
    from trt_anon.pipeline import Detector, Redactor, Sink
    from trt_anon.redact import NumpyRedactor

    assert isinstance(select_detector(Config(), gpu=False), Detector)
    assert isinstance(NumpyRedactor(25), Redactor)
    out = av.open(io.BytesIO(), "w", format="matroska")
    assert isinstance(PyAVEncoder(out, 64, 48, Fraction(25), Fraction(1, 25), None, 18, "veryfast"), Sink)

    class Writer:
        last_pts = None

        def write(self, frames, pts):
            pass

        def close(self):
            pass

    assert not isinstance(Writer(), Sink)
