"""GPU path against the CPU reference, on the same real-face clips."""
from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import check_redacted, decode_frames, video_times
from synth import Face, make_clip

import trt_anon

FACES = [Face(80, (60, 60), (4.0, 0.5)), Face(50, (450, 180), (-2.0, 0.0), flip=True)]


def gpu_decoder_installed() -> bool:
    import importlib.util

    for name in ("nvidia.dali", "PyNvVideoCodec"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ModuleNotFoundError:
            pass
    return False


def gpu_run(src, out, **kw):
    """process() on the GPU stages. With DALI or PyNvVideoCodec installed, backend="gpu" (a GPU
    decoder is required); without one, "auto", whose decoder is PyAV with each batch uploaded.
    Either way the detector, the redactor and the decoder that ran are checked."""
    decoder = gpu_decoder_installed()
    report = trt_anon.process(src, out, backend="gpu" if decoder else "auto", **kw)
    assert report.backends["detect"] in ("tensorrt-fp16", "torch-cuda-fp16"), report.backends
    assert report.backends["redact"] == "cupy", report.backends
    assert report.backends["decode"] in (("dali", "pynvvideocodec") if decoder else ("pyav (uploaded)",))
    return report


def boxes_by_frame(path):
    return [np.array([f["box"] for f in fr["faces"] if f["kind"] == "hit"], np.float32).reshape(-1, 4)
            for fr in json.loads(path.read_text())["frames"]]


@pytest.mark.parametrize("n", [1, 31, 33, 70])
def test_gpu_matches_cpu(tmp_path, n):
    clip = make_clip(tmp_path / f"c{n}.mp4", frames=n, faces=FACES)
    # one model precision class and one detection size for both: "auto" is full size on the GPU and
    # 2/3 on the CPU, and the CPU's default INT8 model moves boxes more than FP16 does; every frame looked
    # at: detect_every="auto" plans per batch, and the two batch differently (32, 8)
    gpu = gpu_run(clip.path, tmp_path / "gpu.mp4", json_path=tmp_path / "gpu.json", det_size=640, detect_every=1)
    cpu = trt_anon.process(clip.path, tmp_path / "cpu.mp4", backend="cpu", cpu_precision="fp32", det_size=640,
                           json_path=tmp_path / "cpu.json", detect_every=1)
    assert gpu.frames == cpu.frames == n
    assert video_times(tmp_path / "gpu.mp4") == video_times(clip.path)
    from trt_anon.detect.detections import iou
    for a, b in zip(boxes_by_frame(tmp_path / "gpu.json"), boxes_by_frame(tmp_path / "cpu.json")):
        assert len(a) == len(b)
        if len(a):
            assert (iou(a, b).max(axis=1) >= 0.9).all()
    check_redacted(clip, clip.path, tmp_path / "gpu.mp4", max_bg=4.0)


def test_cupy_mosaic_equals_numpy():
    import cupy as cp

    from trt_anon.redact import NumpyRedactor
    from trt_anon.redact.gpu import CupyRedactor

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 1080, 1920, 3), dtype=np.uint8)
    boxes = [np.array([[x, y, x + s, y + s] for x, y, s in rng.uniform(0, 1900, (rng.integers(0, 6), 3))])
             .reshape(-1, 4) for _ in range(8)]
    for cell in (25, 40):  # the smallest cell; faces larger than 4 cells get larger ones either way
        ref = NumpyRedactor(cell)(frames.copy(), boxes)
        got = CupyRedactor(cell)(cp.asarray(frames), boxes)
        np.testing.assert_array_equal(cp.asnumpy(got), ref)
        for style in ("blur", "solid"):
            ref = NumpyRedactor(cell, style, (90, 90, 90))(frames.copy(), boxes)
            got = CupyRedactor(cell, style, (90, 90, 90))(cp.asarray(frames), boxes)
            np.testing.assert_array_equal(cp.asnumpy(got), ref, err_msg=f"{style} {cell}")


def test_gpu_preprocess_close_to_opencv(tmp_path):
    import cupy as cp

    from trt_anon.detect import centerface as cf
    from trt_anon.detect.gpu_pre import preprocess
    from trt_anon.detect.onnxrt import OnnxRuntimeDetector

    frames = decode_frames(make_clip(tmp_path / "pre.mp4", 1280, 720, frames=2, audio=0).path)
    batch = np.stack(frames)
    g = cf.Geometry.fit(720, 1280, "auto")
    ref = OnnxRuntimeDetector.preprocess(None, batch, g)
    got = cp.asnumpy(preprocess(cp.asarray(batch), g))
    assert np.abs(ref - got).mean() < 1.0


def test_torch_detector_agrees_with_onnxruntime():
    import cupy as cp
    from skimage import data

    from trt_anon.detect.detections import iou
    from trt_anon.detect.onnxrt import OnnxRuntimeDetector
    from trt_anon.detect.torch_cuda import TorchCudaDetector

    img = np.stack([data.astronaut()] * 4)
    a = OnnxRuntimeDetector("auto", 0.15)(img)
    b = TorchCudaDetector("auto", 0.15)(cp.asarray(img))
    for x, y in zip(a, b):
        assert len(x) == len(y) == 1 and iou(x.xyxy, y.xyxy)[0, 0] > 0.9


def _faces_in_batches(n: int = 11):
    """``n`` frames of a real face moving, 720p, on the device."""
    import cupy as cp
    from skimage import data, transform

    img = (transform.resize(data.astronaut(), (720, 1280 + 8 * n)) * 255).round().astype(np.uint8)
    return cp.asarray(np.stack([img[:, 8 * i:8 * i + 1280] for i in range(n)]))


def test_padded_buckets_give_the_same_boxes_on_the_gpu():
    """11 frames run as a batch of 16 (cuDNN's choice for that shape), each alone as a batch of 1: the same
    faces, to FP16 rounding."""
    from trt_anon.detect.detections import iou
    from trt_anon.detect.torch_cuda import TorchCudaDetector

    frames = _faces_in_batches()
    det = TorchCudaDetector("auto", 0.15, frame_hw=frames.shape[1:3])
    together = det(frames)
    alone = [det(frames[i:i + 1])[0] for i in range(len(frames))]
    for a, b in zip(together, alone):
        assert len(a) == len(b) == 1 and iou(a.xyxy, b.xyxy)[0, 0] > 0.98


def test_cuda_graphs_give_the_same_boxes_as_eager():
    """TRT_ANON_CUDA_GRAPHS=1's detector: each batch size captured once at set-up and replayed; the same faces
    as the eager network, call after call (a replay's outputs are copied before the next one)."""
    from trt_anon.detect.detections import iou
    from trt_anon.detect.torch_cuda import TorchCudaDetector

    frames = _faces_in_batches(40)  # two chunks of 32 and 8: the second replay must not overwrite the first
    eager = TorchCudaDetector("auto", 0.15, frame_hw=frames.shape[1:3])
    graphs = TorchCudaDetector("auto", 0.15, frame_hw=frames.shape[1:3], graphs=True)
    assert len(graphs.graphs) == len(graphs.buckets)
    for _ in range(2):
        for a, b in zip(eager(frames), graphs(frames)):
            assert len(a) == len(b) == 1 and iou(a.xyxy, b.xyxy)[0, 0] > 0.98


def test_yuv_conversion_matches_ffmpeg(tmp_path):
    import av
    import cupy as cp

    from trt_anon.encode.gpu_color import rgb_to_yuv420

    rgb = np.stack(decode_frames(make_clip(tmp_path / "col.mp4", 640, 360, frames=1, audio=0).path))
    ref = av.VideoFrame.from_ndarray(rgb[0]).reformat(format="yuv420p", dst_colorspace=5).to_ndarray()
    got = cp.asnumpy(rgb_to_yuv420(cp.asarray(rgb), 5, 1))[0]
    assert np.abs(ref.astype(int) - got).mean() < 1.5


def test_no_frame_sized_host_copies_with_nvenc(tmp_path, monkeypatch):
    import cupy as cp

    from trt_anon.encode.gpu import nvenc_available

    ok, why = nvenc_available()
    if not ok:
        pytest.skip(f"no NVENC on this GPU ({why}); the libx264 fallback copies one batch per batch by design")
    copies = []
    real = cp.ndarray.get

    def counting_get(self, *a, **k):
        copies.append(self.nbytes)
        return real(self, *a, **k)

    monkeypatch.setattr(cp.ndarray, "get", counting_get)
    clip = make_clip(tmp_path / "n.mp4", 1280, 720, frames=40, faces=FACES)
    report = gpu_run(clip.path, tmp_path / "o.mp4")
    assert report.backends["encode"].endswith("nvenc")
    assert max(copies, default=0) < 1280 * 720  # boxes and candidates only, never a frame


def test_gpu_reports_missing_nvenc_instead_of_crashing(tmp_path):
    from trt_anon.encode.gpu import nvenc_available

    clip = make_clip(tmp_path / "e.mp4", frames=10, faces=FACES)
    report = gpu_run(clip.path, tmp_path / "o.mp4")
    if not nvenc_available()[0]:
        assert report.backends["encode"].startswith("libx264")
        assert any("NVENC" in w for w in report.warnings)


def test_gpu_hevc_output(tmp_path):
    import av

    clip = make_clip(tmp_path / "h.mp4", frames=20, faces=FACES)
    report = gpu_run(clip.path, tmp_path / "o.mp4", codec="hevc")
    assert report.backends["encode"] in ("hevc_nvenc", "libx265 (gpu yuv)")
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    assert video_times(tmp_path / "o.mp4") == video_times(clip.path)
    check_redacted(clip, clip.path, tmp_path / "o.mp4", max_bg=4.0)


def bt709_clip(path, n: int = 8, width: int = 1280, height: int = 720, tagged: bool = True):
    """An H.264 clip encoded BT.709 (limited range), with a saturated patch; tagged as such, or
    untagged (what many screen recorders and older cameras write)."""
    from fractions import Fraction

    import av
    from skimage import data, transform

    img = (transform.resize(data.astronaut(), (height, width + 8 * n)) * 255).round().astype(np.uint8)
    img[:100, :200] = (230, 40, 40)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"crf": "12"})
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        cc = vs.codec_context
        if tagged:
            cc.colorspace = cc.color_primaries = cc.color_trc = 1
            cc.color_range = 1
        for i in range(n):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:, 8 * i:8 * i + width]), format="rgb24")
            f = f.reformat(format="yuv420p", dst_colorspace=1, dst_color_range=1)
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
    return path


def test_dali_bt709_hd_decodes_to_the_streams_colours(tmp_path):
    """DALI's own RGB is BT.601 whatever the stream; its YCbCr converted with the stream's matrix
    gives what libswscale gives for the tagged stream, and the GPU path's output keeps them."""
    import av
    import cupy as cp

    pytest.importorskip("nvidia.dali", reason="DALI is not installed here (PyAV-only GPU machine)")
    from trt_anon.decode.dali import DaliDecoder

    path = bt709_clip(tmp_path / "hd709.mp4")
    with av.open(str(path)) as c:
        tb = c.streams.video[0].time_base
        ref = np.stack([f.to_ndarray(format="rgb24", src_colorspace=1, src_color_range=1) for f in c.decode(video=0)])
    got = np.concatenate([cp.asnumpy(b.frames) for b in DaliDecoder(path, 32, tb, colorspace=(1, 1))])
    assert got.shape == ref.shape and np.abs(got.astype(int) - ref).mean() < 1.5
    report = trt_anon.process(path, tmp_path / "o.mp4", backend="gpu")
    assert report.backends["decode"] == "dali"
    out, src = np.stack(decode_frames(tmp_path / "o.mp4")), np.stack(decode_frames(path))
    for region in (np.s_[:, :100, :200], np.s_[:, 400:, 800:]):  # the red patch, a corner away from the face
        assert np.abs(out[region].astype(int) - src[region]).mean() < 2.0


def test_untagged_hd_keeps_its_colours(tmp_path):
    """Untagged 1280x720: every path reads and writes it with one matrix (libswscale's BT.601), so
    the GPU output decodes to the input's colours (a 709/601 mix moved luma ~10 codes)."""
    path = bt709_clip(tmp_path / "untagged.mp4", tagged=False)
    gpu_run(path, tmp_path / "o.mp4")
    out, src = np.stack(decode_frames(tmp_path / "o.mp4")), np.stack(decode_frames(path))
    for region in (np.s_[:, :100, :200], np.s_[:, 400:, 800:]):  # the red patch, a corner away from the face
        assert np.abs(out[region].astype(int) - src[region]).mean() < 2.0
