"""Blur and solid, the NumPy references the GPU kernels are held to: stated pixel by pixel, then measured."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from trt_anon.config import Config
from trt_anon.errors import ConfigError
from trt_anon.redact import blur, cell_sizes, pixel_mask, solid
from trt_anon.redact.styles.blur import blur_cells

ROOT = Path(__file__).resolve().parents[1]


def bspline(d: int, c: int) -> int:
    return 6 * c * c - 2 * d * d if d <= c else max(0, 3 * c - d) ** 2


def brute_blur(frame: np.ndarray, boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """The blur's definition, one pixel at a time: per cell size (largest first), each pixel of a cell
    touching a box of that size becomes the mean of the redacted cells' rounded means weighted by the
    quadratic B-spline of its distance d (half pixels) to their centres, per axis: 6c^2 - 2d^2 up to
    half a cell, (3c - d)^2 up to 1.5 cells, 0 beyond; rounded half up."""
    out = frame.copy()
    h, w = frame.shape[:2]
    for c in sorted(set(cells.tolist()), reverse=True):
        src = out.copy()
        touched = set()
        for (x1, y1, x2, y2), bc in zip(boxes, cells):
            if bc != c:
                continue
            for y in range(max(0, int(np.floor(y1))), min(h, int(np.ceil(y2)))):
                for x in range(max(0, int(np.floor(x1))), min(w, int(np.ceil(x2)))):
                    touched.add((y // c, x // c))
        means = {}
        for cy, cx in touched:
            block = src[cy * c:(cy + 1) * c, cx * c:(cx + 1) * c].astype(np.int64)
            n = block.shape[0] * block.shape[1]
            means[cy, cx] = (block.sum((0, 1)) + n // 2) // n
        for cy, cx in touched:
            for y in range(cy * c, min(h, (cy + 1) * c)):
                for x in range(cx * c, min(w, (cx + 1) * c)):
                    num, den = 0, 0
                    for (ny, nx), m in means.items():
                        wy, wx = (bspline(abs(2 * p + 1 - (2 * n + 1) * c), c) for p, n in ((y, ny), (x, nx)))
                        num, den = num + wy * wx * m, den + wy * wx
                    out[y, x] = (num + den // 2) // den
    return out


@pytest.mark.parametrize("dtype, cells", [(np.uint8, [7, 7]), (np.uint8, [9, 6]), (np.uint16, [8, 8])])
def test_blur_matches_definition(dtype, cells):
    rng = np.random.default_rng(len(cells) + cells[0])
    frame = rng.integers(0, np.iinfo(dtype).max + 1, (41, 53, 3), dtype=dtype)  # partial cells at the edges
    cells = np.array(cells)
    for _ in range(6):
        x1, y1 = rng.uniform(-10, 50, 2)
        boxes = np.array([[x1, y1, x1 + rng.uniform(1, 30), y1 + rng.uniform(1, 30)],
                          [x1 + 6, y1 - 4, x1 + 20, y1 + 12]])
        np.testing.assert_array_equal(blur(frame.copy(), boxes, cells), brute_blur(frame, boxes, cells))


def test_blur_covers_the_cells_and_reads_only_their_means():
    """Pixels outside the redacted cells neither change nor feed in; inside, only cell means count."""
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    boxes = np.array([[30, 20, 80, 70]])
    mask = pixel_mask(boxes, 25, 100, 150)
    out = blur(frame.copy(), boxes, 25)
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    assert (out[mask] != frame[mask]).mean() > 0.9
    other = frame.copy()
    other[~mask] = 255 - other[~mask]            # the surroundings: no influence
    a, b = other[25:50, 25:50, 0].reshape(-1)[:2]  # two pixels of one cell swap values: same mean
    other[25, 25, 0], other[25, 26, 0] = b, a
    np.testing.assert_array_equal(blur(other, boxes, 25)[mask], out[mask])


def test_blur_is_smooth_and_order_free():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, 50:] = 200
    out = blur(frame.copy(), np.array([[10, 10, 90, 90]]), 25)
    row = out[50, :, 0].astype(int)
    assert np.abs(np.diff(row)).max() <= 9  # a ramp across the 0 -> 200 edge, not a step
    a, b = [5, 5, 70, 60], [40, 30, 98, 97]
    np.testing.assert_array_equal(blur(frame.copy(), np.array([a, b]), 25), blur(frame.copy(), np.array([b, a]), 25))


def test_blur_cells_are_coarser_for_large_boxes():
    boxes = np.array([[0, 0, 40, 50], [0, 0, 100, 120], [0, 0, 300, 380], [0, 0, 300, 100]], np.float32)
    # ~4 across the shorter side (an eye band: its height), steps of 8, never below the mosaic's
    assert blur_cells(boxes, 25).tolist() == [25, 32, 80, 32]
    assert cell_sizes(boxes, 25, "blur").tolist() == [25, 32, 80, 32]
    assert cell_sizes(boxes, 40, "solid").tolist() == [40, 40, 80, 40]  # the mosaic's: a 230 px face, 80 px


@pytest.mark.parametrize("dtype, value", [(np.uint8, (10, 128, 255)), (np.uint16, (2570, 32896, 65535))])
def test_solid_fills_the_mosaics_cells(dtype, value):
    frame = np.random.default_rng(1).integers(0, 200, (60, 70, 3)).astype(dtype)
    boxes = np.array([[30, 30, 40, 40], [60, 55, 70, 60]])
    out = solid(frame.copy(), boxes, 25, (10, 128, 255))
    mask = pixel_mask(boxes, 25, 60, 70)
    assert (out[mask] == value).all() and (out[~mask] == frame[~mask]).all()


@pytest.mark.parametrize("text, rgb", [("#80FF00", (128, 255, 0)), ("1, 2,3", (1, 2, 3)), ((4, 5, 6), (4, 5, 6))])
def test_fill_color_forms(text, rgb):
    assert Config(style="solid", fill_color=text).fill_color == rgb


@pytest.mark.parametrize("bad", ["red", "#12345", "1,2", "0,0,256", "#gg0000"])
def test_bad_fill_color_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="fill_color must be"):
        Config(fill_color=bad)
    with pytest.raises(ConfigError, match="style must be one of"):
        Config(style="pixelate")


def _eval_module():
    spec = importlib.util.spec_from_file_location("trt_anon_eval", ROOT / "scripts" / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [48, 160, 300])
def test_no_face_detail_survives_the_blur(size):
    """The eval's measure on a real face: the blur keeps no more detail than the mosaic (and a 25 px
    mosaic keeps some of a large face); a light Gaussian blur keeps most of it, so the measure can fail."""
    import cv2
    from synth import Face, render

    from trt_anon.detect.detections import grow
    from trt_anon.redact import mosaic

    kept = _eval_module().detail_kept
    frame, gt, _ = next(render(1280, 720, [Face(size, (200, 100), source="hopper")], 1))
    boxes = grow(np.array(gt, np.float32), 12, 0.1, 1280, 720)
    blurred = kept(frame, blur(frame.copy(), boxes, cell_sizes(boxes, 25, "blur")), gt[0])
    mosaicked = kept(frame, mosaic(frame.copy(), boxes, 25), gt[0])
    light = kept(frame, cv2.GaussianBlur(frame, (0, 0), size / 40), gt[0])
    assert blurred < 0.15 and blurred <= mosaicked + 0.05 and light > 0.6, (blurred, mosaicked, light)


def sharpness(frame: np.ndarray, box) -> float:
    """Mean absolute fine detail (luma minus its 1.5 px Gaussian blur) in ``box``: ~1 after a blur or a
    fill (codec noise), several times that on a face."""
    import cv2
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.abs(g - cv2.GaussianBlur(g, (0, 0), 1.5))[y1:y2, x1:x2].mean())


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_styles_end_to_end(clips, tmp_path, style):
    """Every face of a moving clip redacted in every frame, in the style and colour asked for (the NumPy
    reference's pixels, within codec noise), the background kept, no frame missing."""
    import json

    from helpers import background_mask, cell_deviation, decode_frames, style_difference

    import trt_anon

    clip = clips["moving"]
    out, js = tmp_path / f"{style}.mp4", tmp_path / f"{style}.json"
    report = trt_anon.process(clip.path, out, style=style, fill_color="#3050f0", json_path=js)
    assert report.backends["redact"] == "numpy"
    source, written = decode_frames(clip.path), decode_frames(out)
    assert len(written) == len(source) == len(clip.boxes)
    for i, (fa, fb, boxes) in enumerate(zip(source, written, clip.boxes)):
        for box in boxes:
            assert sharpness(fa, box) > 4, f"frame {i}: input face {box} not textured?"
            if style == "mosaic":  # cells of one colour each (their edges are sharp)
                assert cell_deviation(fb, box) < 4, f"frame {i}: face {box} not mosaicked"
            else:
                assert sharpness(fb, box) < 1.5, f"frame {i}: face {box} not redacted"
            if style == "solid":  # the colour asked for, stated here, not only by the reference below
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                assert np.abs(fb[y1:y2, x1:x2].astype(int) - (48, 80, 240)).mean() < 4, f"frame {i}: colour"
        near = [b for j in range(max(0, i - 6), min(len(clip.boxes), i + 7)) for b in clip.boxes[j]]
        mask = background_mask(fa.shape, near, pad=80)  # blur cells are up to 32 px here
        assert np.abs(fa.astype(int) - fb)[mask].mean() < 3.0, f"frame {i}: background changed"
    diffs = style_difference(clip.path, out, json.loads(js.read_text())["frames"], style, (48, 80, 240))
    assert max(diffs) < 4, diffs  # codec noise ~2; another style or colour: 25 or more


def test_eyes_target_with_the_blur(clips, tmp_path):
    from helpers import decode_frames

    import trt_anon

    clip = clips["moving"]
    out = tmp_path / "eyes.mp4"
    trt_anon.process(clip.path, out, target="eyes", style="blur")
    frames = decode_frames(out)
    assert len(frames) == len(clip.boxes)
    mouth_blurred = []
    for i, (frame, (box,)) in enumerate(zip(frames, clip.boxes)):
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        eyes = (x1 + 0.2 * w, y1 + 0.33 * h, x2 - 0.2 * w, y1 + 0.43 * h)
        mouth = (x1 + 0.3 * w, y1 + 0.75 * h, x2 - 0.3 * w, y1 + 0.85 * h)
        assert sharpness(frame, eyes) < 1.0, f"frame {i}"  # blurred ~0.5, face ~3
        if sharpness(frame, mouth) <= 1.5:
            mouth_blurred.append(i)
    # the default --detect-every auto: a band between two looks may reach the next row of cells (test_end_to_end)
    assert len(mouth_blurred) <= len(frames) // 4, mouth_blurred


@pytest.mark.parametrize("style", ["blur", "solid"])
def test_ten_bit_video_with_each_style(tmp_path, style):
    """10-bit HEVC: the CPU path redacts the 16-bit frames and writes 10-bit, as with the mosaic."""
    import av
    from helpers import decode_frames
    from synth import Face, make_clip

    import trt_anon

    clip = make_clip(tmp_path / "hdr.mkv", frames=8, codec="libx265", pix_fmt="yuv420p10le",
                     faces=[Face(70, (60, 60), (3.0, 0.5))])
    report = trt_anon.process(clip.path, style=style, fill_color="200,200,200")
    assert len(report.warnings) == 1 and "HEVC Main 10" in report.warnings[0]
    with av.open(report.output) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    frames = decode_frames(report.output)
    assert len(frames) == len(clip.boxes)
    for i, (frame, (box,)) in enumerate(zip(frames, clip.boxes)):
        assert sharpness(frame, box) < 1.5, f"frame {i}"
        if style == "solid":
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            assert np.abs(frame[y1:y2, x1:x2].astype(int) - 200).mean() < 3


def test_large_faces_are_as_hidden_as_small_ones_by_default(tmp_path):
    """A 600 px face (a portrait phone frame), default options: the output keeps no more of its detail
    than 25 px cells leave of a 100 px face (the eval's bar, ~0.1; docs/quality.md, Styles). With 25 px cells on
    every face it kept ~0.85: recognisable at thumbnail size."""
    from PIL import Image
    from synth import Face, render

    import trt_anon

    kept = []
    for source in ("astronaut", "hopper"):
        frame, gt, _ = next(render(1080, 1920, [Face(600, (240, 500), source=source)], 1))
        Image.fromarray(frame).save(tmp_path / "portrait.png")
        trt_anon.process(tmp_path / "portrait.png", tmp_path / "out.png", backend="cpu", overwrite=True)
        out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
        kept.append(_eval_module().detail_kept(frame, out, gt[0]))
    assert np.mean(kept) < 0.2, kept


def test_every_style_the_options_accept_has_a_reference_and_kernels():
    """A style is a module in trt_anon/redact/styles/ named in config.STYLES: the option, the CPU and the GPU
    redactors all take it from there (the GPU redactor has no style of its own to fall back to)."""
    from trt_anon.config import STYLES as NAMES
    from trt_anon.redact import STYLES

    assert tuple(STYLES) == NAMES
    for name, style in STYLES.items():
        assert style.name == name and style.kernels and all('extern "C"' in src for src, _ in style.kernels)
        assert all(fn in src for src, fn in style.kernels)
