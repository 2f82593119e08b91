"""The CPU path in the decoder's own pixels: every sample outside the redacted cells reaches the encoder exactly
as the decoder gave it (8-bit 4:2:0, 10-bit 4:2:0, 4:4:4), and the styles on planes redact the cells they would
on RGB, each chroma cell from its luma cell's own samples."""
from __future__ import annotations

import av
import numpy as np
import pytest
from synth import Face, make_clip

import trt_anon
from trt_anon import planar, stages
from trt_anon.config import Config
from trt_anon.encode import PyAVEncoder
from trt_anon.redact import STYLES, NumpyRedactor, box_margin, cell_sizes, mosaic
from trt_anon.redact.cells import box_cells, cell_edges

FACES = [Face(70, (40, 30), (3.0, 0.5), source="astronaut"), Face(56, (200, 60), (-2.0, 0.0), source="hopper")]


def decoded_rows(path) -> list[np.ndarray]:
    """The input's frames as FFmpeg decodes them, each its Y, U and V samples in a row (PyAV's own planar
    arrays, not the code under test)."""
    with av.open(str(path)) as c:
        return [np.ascontiguousarray(f.to_ndarray()).reshape(-1) for f in c.decode(video=0)]


def cell_mask(layout: planar.Planar, boxes, cells) -> np.ndarray:
    """The samples of a row inside the cells that touch ``boxes``, on every plane."""
    mask = np.zeros(layout.row, bool)
    for plane, shift in zip(layout.planes(mask), [(0, 0), layout.shift, layout.shift]):
        for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cells, layout.height, layout.width):
            ys = cell_edges(cy0, cy1, c, layout.height, shift[0])
            xs = cell_edges(cx0, cx1, c, layout.width, shift[1])
            plane[ys[0]:ys[-1], xs[0]:xs[-1]] = True
    return mask


@pytest.mark.parametrize("pix_fmt,codec", [("yuv420p", None), ("yuv420p10le", "libx265"), ("yuv444p", None)])
@pytest.mark.parametrize("style", ["mosaic", "solid"])
def test_untouched_pixels_are_the_decoders_bit_for_bit(tmp_path, monkeypatch, pix_fmt, codec, style):
    """What the encoder is handed equals the decoder's output exactly outside the redacted cells, and differs
    inside them (an RGB round trip on the way changes samples everywhere by a level or two)."""
    clip = make_clip(tmp_path / "in.mkv", 320, 192, frames=12, audio=0, codec=codec, pix_fmt=pix_fmt, faces=FACES)
    handed: list[np.ndarray] = []  # the samples of the PyAV frames the encoder makes of what it is handed
    encode = PyAVEncoder.encode

    def spy(self, frames, pts):
        for f in frames:
            row = self.layout.empty(1)[0]
            self.layout.read(self.layout.frame(f), row)
            handed.append(row)
        return encode(self, frames, pts)
    monkeypatch.setattr(PyAVEncoder, "encode", spy)
    given: list[np.ndarray] = []  # the boxes the redactor was given (the --json file rounds them to 0.1 px)
    redact = NumpyRedactor.__call__
    monkeypatch.setattr(NumpyRedactor, "__call__", lambda self, f, b: given.extend(b) or redact(self, f, b))
    out = tmp_path / "out.mkv"
    report = trt_anon.process(clip.path, out, style=style)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt  # written in the decoder's own format
    source = decoded_rows(clip.path)
    assert len(handed) == len(source) == report.frames == 12
    layout = planar.Planar(pix_fmt, 320, 192)
    assert handed[0].shape == (layout.row,) and handed[0].dtype == layout.dtype
    cfg = Config(style=style)
    redacted = 0
    assert len(given) == len(source)
    for i, (got, want, boxes) in enumerate(zip(handed, source, given)):
        inside = cell_mask(layout, boxes, cell_sizes(boxes, cfg.mosaic_cell, style, box_margin(cfg)))
        assert np.array_equal(got[~inside], want[~inside]), f"frame {i}: samples outside the cells changed"
        if len(boxes):
            assert (got[inside] != want[inside]).mean() > 0.5, f"frame {i}: the cells were not redacted"
            redacted += 1
    assert redacted >= 10  # both faces are found from the first frames


def test_rgb_input_formats_still_go_through_rgb(tmp_path, monkeypatch):
    """A format not kept as decoded (or every format, when the encoder writes none of them) takes the RGB path:
    the same faces redacted, the output still in the encoder's format."""
    clip = make_clip(tmp_path / "in.mp4", 320, 192, frames=8, audio=0, faces=FACES)
    monkeypatch.setattr(stages, "planar_formats", lambda cfg, info: frozenset())
    taken = []
    real = NumpyRedactor.__call__
    monkeypatch.setattr(NumpyRedactor, "__call__", lambda self, f, b: taken.append(self.layout) or real(self, f, b))
    report = trt_anon.process(clip.path, tmp_path / "out.mp4")
    assert report.frames == 8 and taken and all(layout is None for layout in taken)


def test_planar_layout_reads_and_writes_frames():
    """A frame read into a row and made a PyAV frame again has the same samples; odd sizes of subsampled
    formats and formats not listed are not kept planar."""
    for fmt in planar.FORMATS:
        frame = av.VideoFrame(64, 48, fmt)
        layout = planar.Planar.of(frame)
        rng = np.random.default_rng(1)
        row = rng.integers(0, 1024 if layout.deep else 256, layout.row).astype(layout.dtype)
        back = layout.empty(1)[0]
        layout.read(layout.frame(row), back)
        assert np.array_equal(back, row), fmt
    assert planar.Planar.of(av.VideoFrame(65, 48, "yuv420p")) is None
    assert planar.Planar.of(av.VideoFrame(65, 47, "yuv444p")) is not None
    assert planar.Planar.of(av.VideoFrame(64, 48, "nv12")) is None
    assert planar.Planar.of(av.VideoFrame(64, 48, "yuv444p"), allowed={"yuv420p"}) is None


@pytest.mark.parametrize("cell", [25, 24, 50])
def test_a_chroma_cell_is_its_luma_cells_own_samples(cell):
    """On a 4:2:0 plane each cell becomes the rounded mean of the samples whose first pixel is in its luma
    cell (25 px cells: 13 and 12 samples by turns), and nothing outside them changes."""
    rng = np.random.default_rng(cell)
    height, width = 120, 200
    chroma = rng.integers(0, 256, (height // 2, width // 2, 1)).astype(np.uint8)
    boxes = np.array([[30.5, 10, 131, 77.2]])
    out = mosaic(chroma.copy(), boxes, cell, shift=(1, 1))
    changed = np.zeros(chroma.shape[:2], bool)
    for c, cy0, cx0, cy1, cx1 in box_cells(boxes, cell, height, width):
        for cy in range(cy0, cy1):
            for cx in range(cx0, cx1):
                y0, y1 = -(-min(cy * c, height) // 2), -(-min((cy + 1) * c, height) // 2)
                x0, x1 = -(-min(cx * c, width) // 2), -(-min((cx + 1) * c, width) // 2)
                block = chroma[y0:y1, x0:x1, 0].astype(np.uint64)
                n = block.size
                assert np.all(out[y0:y1, x0:x1, 0] == (block.sum() + n // 2) // n)
                changed[y0:y1, x0:x1] = True
    assert np.array_equal(out[~changed], chroma[~changed])


@pytest.mark.parametrize("style", sorted(STYLES))
def test_styles_on_planes_match_the_rgb_reference(style):
    """A 4:4:4 frame redacted on its planes, then made RGB, is the RGB frame redacted by the reference, up to
    the rounding of the conversions (a cell's mean is the same in either space: the conversion is affine)."""
    from skimage import data
    rgb = np.ascontiguousarray(data.astronaut()[100:292, 150:470])  # 192 x 320, the astronaut's face
    layout = planar.Planar("yuv444p", 320, 192, colorspace=1, color_range=1)  # BT.709, limited
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv444p", dst_colorspace=1,
                                                                     dst_color_range=1)
    row = layout.empty(1)[0]
    layout.read(frame, row)
    boxes = [np.array([[90, 20, 230, 180]], np.float32)]
    color = (200, 30, 90)
    reference = layout.rgb(row[None])  # the frame's RGB, as the RGB path decodes it, redacted there
    NumpyRedactor(25, style, color)(reference, boxes)
    NumpyRedactor(25, style, color, layout=layout)(row[None], boxes)
    after = layout.rgb(row[None])[0]
    assert np.abs(after.astype(int) - reference[0]).max() <= 3
    if style == "solid":  # the colour asked for, through the stream's matrix and range
        assert np.abs(after[60:150, 110:210].astype(int) - color).max() <= 2


@pytest.mark.parametrize("fmt", ["yuv420p", "yuv422p10le", "yuv444p"])
def test_a_region_of_a_planar_frame_is_the_frames_rgb_there(fmt):
    """What a consenting person's face is cropped from: a region converted alone equals the whole frame's RGB
    there, but for the chroma interpolated across the region's edge (a sample at most)."""
    from skimage import data
    rgb = np.ascontiguousarray(data.astronaut()[:200, :300])
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt)
    layout = planar.Planar.of(frame)
    row = layout.empty(1)[0]
    layout.read(frame, row)
    whole, view = layout.rgb(row[None])[0], layout.view(row)
    assert view.shape == whole.shape and view.dtype == whole.dtype
    part = view[31:150, 17:201]
    assert part.shape == (119, 184, 3)
    inner = np.abs(part[2:-2, 2:-2].astype(int) - whole[33:148, 19:199])
    assert inner.max() == 0
    assert np.abs(part.astype(int) - whole[31:150, 17:201]).mean() < 1


def blur_reference(plane: np.ndarray, boxes, c: int, shift) -> np.ndarray:
    """Blur on a subsampled plane written out sample by sample in floats: each cell's mean of its own samples
    (``cell_edges``), and each sample of a redacted cell the quadratic B-spline of the redacted cells' means
    around it, at the sample's centre in full-size pixels."""
    sy, sx = shift
    height, width = plane.shape[0] << sy, plane.shape[1] << sx
    rows, cols = -(-height // c), -(-width // c)
    means = np.full((rows, cols), np.nan)
    for _, cy0, cx0, cy1, cx1 in box_cells(boxes, c, height, width):
        for cy in range(cy0, cy1):
            for cx in range(cx0, cx1):
                ys, xs = cell_edges(cy, cy + 1, c, height, sy), cell_edges(cx, cx + 1, c, width, sx)
                block = plane[ys[0]:ys[1], xs[0]:xs[1], 0].astype(np.uint64)
                if block.size:  # a 1 px edge cell may hold no sample of a subsampled plane
                    means[cy, cx] = (block.sum() + block.size // 2) // block.size

    def spline(d):
        d = abs(d)
        return 0.75 - d * d if d <= 0.5 else (0.5 * (d - 1.5) ** 2 if d < 1.5 else 0.0)

    out = plane.copy()
    for y in range(plane.shape[0]):
        for x in range(plane.shape[1]):
            py, px = (y + 0.5) * (1 << sy), (x + 0.5) * (1 << sx)  # the sample's centre
            cy = cx = None
            for k in range(rows):  # the cell its first pixel lies in
                if k * c <= y << sy < (k + 1) * c:
                    cy = k
            for k in range(cols):
                if k * c <= x << sx < (k + 1) * c:
                    cx = k
            own = means[cy, cx]
            if np.isnan(own):
                continue
            num = den = 0.0
            for j in range(max(cy - 2, 0), min(cy + 3, rows)):
                for i in range(max(cx - 2, 0), min(cx + 3, cols)):
                    if not np.isnan(means[j, i]):
                        w = spline((py - (j + 0.5) * c) / c) * spline((px - (i + 0.5) * c) / c)
                        num, den = num + w * means[j, i], den + w
            out[y, x, 0] = int(np.floor(num / den + 0.5))
    return out


@pytest.mark.parametrize("shift", [(1, 1), (0, 1), (0, 0)])
def test_blur_on_a_plane_is_the_spline_of_its_cells_means(shift):
    """Blur on a (subsampled) plane: every sample of a redacted cell is the B-spline of the cells' means at the
    sample's centre (within a level: the kernel rounds in integers), nothing else changes; on a PAL frame
    (576 lines) whose last cell is one pixel, with a box down to the bottom edge."""
    import cv2
    from skimage import data

    from trt_anon.redact.styles.blur import blur
    height, width = 576, 200
    grey = cv2.resize(data.astronaut()[:, 150:150 + width, 1], (width, height), interpolation=cv2.INTER_AREA)
    plane = np.ascontiguousarray(grey[::1 << shift[0], ::1 << shift[1], None])
    boxes = np.array([[20, 470, 130, 576], [140.5, 60, 190, 120]])
    out = blur(plane.copy(), boxes, 25, shift)
    want = blur_reference(plane, boxes, 25, shift)
    assert np.abs(out.astype(int) - want).max() <= 1
    assert (out != plane).mean() > 0.05  # the cells were redacted


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_pal_frame_redacts_down_to_its_last_line(tmp_path, style):
    """720 x 576 4:2:0 (DVD, DVB): the last cell row is one line, whose chroma belongs to the row above; a face
    reaching the bottom edge is redacted there, in every style."""
    faces = [Face(150, (300, 470), (0.0, 1.0), source="astronaut")]
    clip = make_clip(tmp_path / "in.mp4", 720, 576, frames=8, audio=0, faces=faces)
    out = tmp_path / "out.mp4"
    report = trt_anon.process(clip.path, out, style=style, detect_every=1)
    assert report.frames == 8
    source, written = decoded_rows(clip.path), decoded_rows(out)
    layout = planar.Planar("yuv420p", 720, 576)
    for a, b in zip(source, written):  # the bottom rows under the face changed
        ya, yb = layout.planes(a)[0], layout.planes(b)[0]
        assert np.abs(ya[560:, 320:420].astype(int) - yb[560:, 320:420]).mean() > 3
