"""Everything on the GPU path that is not a GPU call, tested on the CPU (tests/gpu does the rest)."""
from __future__ import annotations

import numpy as np
import pytest

from trt_anon.detect import centerface as cf
from trt_anon.detect import engine_cache
from trt_anon.detect.detections import grow
from trt_anon.errors import BackendError
from trt_anon.redact import cell_sizes, mosaic
from trt_anon.redact.cells import cell_groups, face_cells


def apply_cell_groups(frames: np.ndarray, groups: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """What the GPU kernel does, cell by cell, in NumPy (to test ``cell_groups`` without a GPU)."""
    height, width = frames.shape[1:3]
    for c, cells in groups:
        for f, cy, cx in cells:
            block = frames[f, cy * c:min((cy + 1) * c, height), cx * c:min((cx + 1) * c, width)]
            n = block.shape[0] * block.shape[1]
            block[...] = (block.reshape(-1, block.shape[2]).astype(np.uint64).sum(0) + n // 2) // n
    return frames


@pytest.mark.parametrize("cell, most", [(25, 4), (16, 4), (7, 12), (16, 12)])
def test_cell_groups_reproduce_the_reference(cell, most):
    """Boxes overlapping, crossing the edges, empty frames; one or several cell sizes per frame."""
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (4, 90, 160, 3), dtype=np.uint8)
    boxes = []
    for _ in range(4):
        k = rng.integers(0, most)
        x, y = rng.uniform(-20, 150, k), rng.uniform(-20, 80, k)
        s = rng.uniform(5, 120, k)
        boxes.append(np.stack([x, y, x + s, y + s * 1.2], axis=1) if k else np.zeros((0, 4)))
    ref = frames.copy()
    for f, b in zip(ref, boxes):
        mosaic(f, b, cell_sizes(b, cell))
    groups = cell_groups(boxes, [cell_sizes(b, cell) for b in boxes], 90, 160)
    got = apply_cell_groups(frames.copy(), groups)
    np.testing.assert_array_equal(got, ref)
    for c, cells in groups:  # each cell once per launch: no two GPU blocks write the same pixel
        assert len({tuple(r) for r in cells}) == len(cells)


@pytest.mark.parametrize("style", ["mosaic", "blur", "solid"])
def test_cells_grow_with_the_face_for_every_style(style):
    """At most 4 cells across a face (what 25 px cells leave of a 100 px face), in whole multiples of the
    smallest cell, never below it; boxes are margin-grown faces (12 px + 10% per side by default)."""
    faces = np.array([20, 100, 101, 160, 420, 600, 800, 2400], np.float32)
    at = np.full_like(faces, 1000)
    boxes = grow(np.stack([at, at, at + faces, at + 1.3 * faces], axis=1), 12, 0.1, 10000, 10000)
    cells = cell_sizes(boxes, 25, style)
    mosaic_cells = [25, 25, 50, 50, 125, 150, 200, 500]   # 2400 px: the coarsest cell, 500 px
    if style == "blur":  # the blur's cells: coarser still, ~4 across the grown box
        assert (cells >= mosaic_cells).all() and cells[4] == 136  # 528 px box: 8 * ceil(528 / 32)
    else:
        assert cells.tolist() == mosaic_cells
    assert face_cells(boxes, 16).tolist() == [16, 32, 32, 48, 112, 160, 208, 512]
    assert face_cells(boxes[5:6], 25, margin=(0, 0)).tolist() == [200]  # its 744 px box read as a 744 px face


def test_auto_det_size():
    long_side = lambda h, w: max(cf.Geometry.fit(h, w, "auto").in_h, cf.Geometry.fit(h, w, "auto").in_w)  # noqa: E731
    assert long_side(720, 1280) == 864
    assert long_side(1080, 1920) == 1280
    assert long_side(2160, 3840) == 2560
    assert long_side(360, 640) == 640
    assert cf.Geometry.fit(1080, 1920, "auto").scale == pytest.approx(2 / 3)


def _key(**kw):
    base = dict(gpu="NVIDIA H100 80GB HBM3", cc="90", trt="10.13.0", model=cf.MODEL.sha256(), precision="fp16",
                in_h=736, in_w=1280, max_batch=32)
    base.update(kw)
    return engine_cache.EngineKey(**base)


def test_engine_name_encodes_gpu_trt_model_shape():
    name = _key().filename
    for part in ("nvidia-h100-80gb-hbm3", "sm90", "trt10.13.0", cf.MODEL.sha256()[:12], "fp16", "1280x736", "b32"):
        assert part in name
    assert _key(trt="11.4.0").filename != name and _key(gpu="NVIDIA H200").filename != name


def test_engine_check_refuses_foreign_or_stale(tmp_path):
    key = _key()
    path = tmp_path / key.filename
    with pytest.raises(BackendError, match="does not exist"):
        engine_cache.check(path, key)
    path.write_bytes(b"plan")
    with pytest.raises(BackendError, match="no .*json"):
        engine_cache.check(path, key)
    engine_cache.write_sidecar(path, key)
    engine_cache.check(path, key)                       # matches: accepted
    engine_cache.check(path, _key(max_batch=16))        # a larger profile serves a smaller batch
    for other in (_key(gpu="NVIDIA H200"), _key(trt="11.4.0"), _key(model="0" * 64), _key(in_w=640),
                  _key(max_batch=64)):
        with pytest.raises(BackendError, match="does not fit here"):
            engine_cache.check(path, other)


def test_fp16_model_agrees_with_fp32():
    """The FP16 graph TensorRT 11 builds from (strongly typed): same faces, run here by ONNX Runtime."""
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from skimage import data

    from trt_anon.detect.graph import onnx_graph, to_fp16

    img = data.astronaut().astype(np.float32).transpose(2, 0, 1)[None]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(cf.MODEL.read(), opts).run(list(cf.OUTPUT_NAMES), {cf.INPUT_NAME: img})
    half = to_fp16(onnx_graph())
    assert {i.data_type for i in half.graph.initializer if i.name.endswith("weight")} == {10}  # FLOAT16
    got = ort.InferenceSession(half.SerializeToString(), opts).run(list(cf.OUTPUT_NAMES), {cf.INPUT_NAME: img})
    assert np.abs(ref[0] - got[0]).max() < 0.01
    g = cf.Geometry.fit(512, 512, 512)
    a = cf.to_detections(*cf.decode_candidates(*ref, 0.3, g), 1, g)[0]
    b = cf.to_detections(*cf.decode_candidates(*got, 0.3, g), 1, g)[0]
    assert len(a) == len(b) == 1 and np.abs(a.xyxy - b.xyxy).max() < 2.0


def test_torch_module_matches_onnxruntime():
    """The PyTorch network (built from the ONNX initializers) that the CUDA detector runs in FP16."""
    torch = pytest.importorskip("torch", reason="PyTorch is not in the CPU test extras; runs in tests/gpu")
    pytest.importorskip("onnx")
    import onnxruntime as ort
    from skimage import data

    from trt_anon.detect.graph import TorchGraph

    img = data.astronaut().astype(np.float32).transpose(2, 0, 1)[None]
    ref = ort.InferenceSession(cf.MODEL.read()).run(list(cf.OUTPUT_NAMES), {cf.INPUT_NAME: img})
    got = TorchGraph("cpu", torch.float32)(torch.from_numpy(img))
    for r, g in zip(ref, got):
        assert np.abs(r - g.numpy()).max() < 1e-3


def test_torch_module_keeps_few_maps_alive():
    """Each intermediate map is dropped after its last reader: the network's working set, not all of
    its activations (which held ~37 GiB for 32 frames of 1080p on an H200)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not in the CPU test extras; runs in tests/gpu")
    pytest.importorskip("onnx")
    from trt_anon.detect.graph import TorchGraph

    net = TorchGraph("cpu", torch.float32)
    alive, most = {net.input}, 0
    for (op, ins, outs, _), done in zip(net.nodes, net.frees):
        assert all(n in alive or n in net.weights for n in ins), f"{op} reads a map already dropped"
        alive |= set(outs)
        alive -= set(done)
        most = max(most, len(alive))
    assert alive == set(net.outputs) and len(net.nodes) > 100 and most <= 8, most


@pytest.mark.parametrize("fold_bn, channels_last", [(True, False), (False, True), (True, True)],
                         ids=["folded", "channels_last", "both"])
def test_folded_batch_norm_and_channels_last_give_the_same_faces(fold_bn, channels_last):
    """The network as the CUDA detector runs it (BatchNorm folded into the ConvTransposes before it, NHWC memory
    order) against the network as exported: the same output maps to float rounding, the same boxes."""
    torch = pytest.importorskip("torch", reason="PyTorch is not in the CPU test extras; runs in tests/gpu")
    pytest.importorskip("onnx")
    from skimage import data

    from trt_anon.detect.graph import TorchGraph

    img = data.astronaut().astype(np.float32).transpose(2, 0, 1)
    x = torch.from_numpy(np.stack([img, img[:, :, ::-1].copy()]))
    ref = TorchGraph("cpu", torch.float32, fold_bn=False, channels_last=False)
    net = TorchGraph("cpu", torch.float32, fold_bn=fold_bn, channels_last=channels_last)
    bn = [op for op, *_ in net.nodes if op == "BatchNormalization"]
    assert len(bn) == (0 if fold_bn else 3) and len(net.nodes) == len(ref.nodes) - 3 * fold_bn
    want, got = ref(x), net(x)
    assert got[-1].is_contiguous(memory_format=torch.channels_last) == channels_last  # landmarks: 10 channels
    for a, b in zip(want, got):
        assert np.abs(a.numpy() - b.numpy()).max() < 1e-3 * max(1.0, float(a.abs().max()))
    g = cf.Geometry.fit(512, 512, 512)
    a = cf.detections([m.numpy() for m in want], 0.3, g)
    b = cf.detections([m.contiguous().numpy() for m in got], 0.3, g)
    assert [len(d) for d in a] == [len(d) for d in b] == [1, 1]
    for da, db in zip(a, b):
        assert np.abs(da.xyxy - db.xyxy).max() < 0.05 and np.abs(da.landmarks - db.landmarks).max() < 0.05


def test_the_cuda_detector_runs_a_few_fixed_batch_sizes():
    """Every call runs at one of a few batch sizes, each warmed up when the detector is made: 1 (a live stream's
    frame), 4, 8, then steps of 8 up to the largest."""
    from trt_anon.detect.torch_cuda import buckets

    assert buckets(32) == [1, 4, 8, 16, 24, 32]
    assert buckets(8) == [1, 4, 8] and buckets(6) == [1, 4, 6] and buckets(1) == [1]
    assert buckets(40) == [1, 4, 8, 16, 24, 32, 40]


def test_presentation_pts_match_decoded_frames(tmp_path):
    import av
    from synth import make_clip

    from trt_anon.decode.timestamps import presentation_pts

    clip = make_clip(tmp_path / "vfr.mp4", 160, 96, frames=50, vfr=True, audio=0)  # B-frames + VFR
    with av.open(str(clip.path)) as c:
        decoded = [f.pts for f in c.decode(video=0)]
    assert list(presentation_pts(clip.path)) == decoded


def test_gpu_decoder_frame_count_mismatch_is_refused(tmp_path):
    from trt_anon.decode.timestamps import check_exhausted, take
    from trt_anon.errors import InputError

    pts = iter([0, 1, 2])
    assert take(pts, 2, tmp_path, "NVDEC") == [0, 1]
    with pytest.raises(InputError, match="fewer frames"):
        check_exhausted(pts, tmp_path, "NVDEC")
    with pytest.raises(InputError, match="more frames"):
        take(iter([0]), 2, tmp_path, "NVDEC")
    check_exhausted(iter([]), tmp_path, "NVDEC")


def test_nvenc_probe_answers_without_crashing():
    from trt_anon.encode.gpu import nvenc_available

    ok, why = nvenc_available()
    assert isinstance(ok, bool) and (ok or why)


def test_colour_matrix_choice():
    from trt_anon.encode.gpu_color import matrix

    assert matrix(1) == (0.2126, 0.0722)      # tagged BT.709
    assert matrix(5) == matrix(6) == (0.299, 0.114)
    assert matrix(2) == (0.299, 0.114)        # untagged, at any size: BT.601, as libswscale decodes it


def test_out_of_memory_retries_smaller_then_cpu(clips, tmp_path, monkeypatch):
    """A GPU out-of-memory error is retried with a smaller batch, then on the CPU, and reported."""
    import trt_anon
    from trt_anon.detect import onnxrt

    class OutOfMemoryError(RuntimeError):
        pass

    real, calls = onnxrt.OnnxRuntimeDetector.__call__, {"n": 0}

    def oom_once(self, frames, shown=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OutOfMemoryError("out of memory allocating 1 GB")
        return real(self, frames, shown)

    monkeypatch.setattr(onnxrt.OnnxRuntimeDetector, "__call__", oom_once)
    report = trt_anon.process(clips["two"].path, tmp_path / "o.mp4")
    assert report.frames == len(clips["two"].boxes)
    # the batch that ran out (here the CPU path's 8: the error is faked on the CPU), then the next plan's
    assert any("out of GPU memory at batch 8 on backend auto; retried" in w for w in report.warnings)


def test_dali_frame_numbers_keep_exactly_the_real_frames(tmp_path):
    from trt_anon.decode.dali import real_frames
    from trt_anon.errors import InputError

    assert real_frames(np.array([32, 33, 34, -1, -1]), 32, tmp_path) == 3
    assert real_frames(np.array([-1, -1]), 5, tmp_path) == 0
    for bad in ([0, 2, 3, -1], [1, 2, 3, 4], [0, -1, 2, -1]):  # skipped, shifted, padding in between
        with pytest.raises(InputError, match="DALI returned frames"):
            real_frames(np.array(bad), 0, tmp_path)


@pytest.mark.parametrize("n", [1, 31, 33, 70])
def test_dali_decoder_class_on_dali_cpu_reader(tmp_path, n):
    """The DaliDecoder class end to end on DALI's CPU reader (VP9), where DALI is installed: the
    sequence/padding handling is the same as on NVDEC. Not in CI (DALI is a 500 MB GPU extra)."""
    pytest.importorskip("nvidia.dali")
    import av
    from helpers import decode_frames, video_times
    from synth import make_clip

    from trt_anon.decode.dali import DaliDecoder

    clip = make_clip(tmp_path / "c.webm", 160, 96, frames=n, audio=0)
    with av.open(str(clip.path)) as c:
        tb = c.streams.video[0].time_base
    batches = list(DaliDecoder(clip.path, 32, tb, device="cpu"))
    frames = np.concatenate([b.frames for b in batches])
    ref = np.stack(decode_frames(clip.path))
    assert [b.start for b in batches] == list(range(0, n, 32))
    assert frames.shape == ref.shape
    assert [t * tb for b in batches for t in b.pts] == video_times(clip.path)
    assert np.abs(frames.astype(int) - ref).mean() < 3.0  # DALI's YUV->RGB is ~1 level above libswscale's
