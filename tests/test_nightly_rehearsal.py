"""scripts/nightly_gpu.py's logic without a GPU: the summary it writes part by part, the box
agreement arithmetic, the throughput figures, the mosaic check (strict CuPy stand-in), the baseline
comparison, and a clean refusal where there is no GPU. The GPU parts themselves run on a GPU."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from test_gpu_strict import strict_gpu  # noqa: F401  (fixture: strict CuPy stand-in, CPU PyTorch as CUDA)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def nightly():
    spec = importlib.util.spec_from_file_location("nightly_gpu", ROOT / "scripts" / "nightly_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MACHINE = {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-11-25", "cpu": "x", "cores": 16, "commit": "abc",
           "versions": {"av": "18.1.0"}}


def test_summary_collects_parts_into_one_json_and_markdown(nightly, tmp_path):
    path = nightly.summary_path(tmp_path, MACHINE["gpu"], "20261125")
    assert path.name == "nvidia-h100-80gb-hbm3-20261125.json"
    nightly.update_summary(path, MACHINE, "tests", {"passed": True, "headline": "9 ran, 0 failed, 0 skipped"})
    nightly.update_summary(path, MACHINE, "throughput", {"passed": False, "headline": "ddr 900 fps",
                                                         "problems": ["audio: audio packets changed"]})
    data = json.loads(path.read_text())
    assert set(data["parts"]) == {"tests", "throughput"} and data["machine"]["gpu"] == MACHINE["gpu"]
    md = path.with_suffix(".md").read_text()
    assert "| tests | PASS | 9 ran" in md and "| throughput | FAIL | ddr 900 fps |" in md
    assert "| agreement | not run |" in md and "- audio: audio packets changed" in md


def test_box_agreement_pairs_boxes_one_to_one(nightly):
    a = [np.array([[0, 0, 100, 100], [200, 200, 260, 260]], np.float32), np.zeros((0, 4), np.float32)]
    same = nightly.box_agreement(a, [b[::-1].copy() for b in a])       # order does not matter
    assert same["frames_disagreeing"] == 0 and same["min_iou"] == 1.0 and same["boxes"] == 2
    shifted = [a[0] + np.float32(8), a[1]]                              # IoU of a 100 px box moved 8 px: ~0.72
    res = nightly.box_agreement(a, shifted)
    assert res["frames_disagreeing"] == 1 and res["min_iou"] < 0.9 and "IoU" in res["problems"][0]
    missing = nightly.box_agreement(a, [a[0][:1], a[1]])
    assert missing["frames_disagreeing"] == 1 and "2 CPU boxes, 1 GPU boxes" in missing["problems"][0]


def test_end_to_end_figures_leave_set_up_out(nightly):
    report = types.SimpleNamespace(frames=2000, fps=250.0, wall=8.0, backends={"decode": "dali"}, warnings=[],
                                   seconds={"decode": 0.5, "detect": 1.0, "redact": 0.5, "encode": 7.0, "setup": 3})
    f = nightly.e2e_figures(report)
    assert f["e2e_fps"] == 400.0 and f["stage_seconds"]["setup"] == 3  # 2000 frames in 8 s less 3 s of set-up


def test_looks_count_frames_calls_and_gpu_time(nightly, strict_gpu):  # noqa: F811
    """The detector wrapper the throughput part measures with: frames looked at, call sizes, and GPU time per
    call from two events on the detector's stream (the stand-in's events time the host)."""
    cp = strict_gpu
    stream = cp.cuda.Stream(non_blocking=True)

    class Detector:
        name = "torch-cuda-fp16"

        def __init__(self):
            self.stream = stream

        def __call__(self, frames):
            return [None] * len(frames)

    looks = nightly.Looks(Detector())
    for n in (8, 8, 24, 32):
        assert looks(np.zeros((n, 4, 4, 3), np.uint8)) == [None] * n
    f = looks.figures(100)
    assert f["frames_looked"] == 72 and f["look_share"] == 0.72 and f["calls"] == 4
    assert f["call_sizes"] == {"8": 2, "24": 1, "32": 1} and set(f["gpu_ms_by_call_size"]) == {"8", "24", "32"}
    assert f["gpu_ms_per_call"]["max"] >= f["gpu_ms_per_call"]["median"] >= 0


def test_targets_are_reported_met_or_not(nightly):
    t = nightly.targets({"ddr_fps": 612.0, "e2e_fps": 180.0, "x264_alone": {"fps": 190.0},
                         "gpu_ms_per_looked_frame": 2.1, "gpu_memory_peak_gib": 9.5})
    assert t["ddr_fps"]["met"] and t["gpu_memory_peak_gib"]["met"]
    assert t["e2e_over_x264"] == {"goal": ">= 0.9", "got": 0.95, "met": True}
    assert not t["gpu_ms_per_looked_frame"]["met"]


def test_the_clip_is_made_here_and_only_read_on_the_gpu(nightly, tmp_path, capsys):
    """--make-clips writes the clip and its ground truth (no GPU needed); --clips only reads them: a missing clip
    is an error that says how to make it, never made on the GPU machine."""
    clips = tmp_path / "clips"
    with pytest.raises(FileNotFoundError, match="--make-clips"):
        nightly.workload(clips, 12, (320, 180), make=False)
    assert nightly.main(["--make-clips", str(clips), "--frames", "12", "--size", "320x180"]) == 0
    assert "to the GPU machine" in capsys.readouterr().out
    made = nightly.workload(clips, 12, (320, 180), make=False)
    again = nightly.workload(clips, 12, (320, 180), make=False)
    assert len(made.boxes) == 12 and made.boxes == again.boxes and made.faces == again.faces
    assert all(len(b) >= 2 for b in made.boxes)  # two faces from the start, the third enters later


def test_backend_check_names_what_ran(nightly, monkeypatch):
    monkeypatch.setattr(nightly, "gpu_decoder_installed", lambda: False)
    good = {"decode": "pyav (uploaded)", "detect": "torch-cuda-fp16", "redact": "cupy", "encode": "libx264 (gpu yuv)"}
    assert nightly.backend_problems(good) == []
    assert "PyTorch CUDA FP16 (not TensorRT)" == nightly.detector_words(good)
    cpu = {"decode": "pyav", "detect": "onnxruntime", "redact": "numpy", "encode": "libx264"}
    assert len(nightly.backend_problems(cpu)) == 4
    monkeypatch.setattr(nightly, "gpu_decoder_installed", lambda: True)
    assert nightly.backend_problems(good) == ["decoder 'pyav (uploaded)', expected dali or pynvvideocodec"]


def test_parts_and_a_cut_tests_run(nightly):
    assert nightly.parse_parts("throughput,tests") == ("throughput", "tests")
    assert nightly.parse_parts("all") == nightly.PARTS
    with pytest.raises(Exception):
        nightly.parse_parts("tests,speed")
    log = ("tests/gpu/test_gpu.py::test_a PASSED [ 10%]\ntests/gpu/test_gpu.py::test_b FAILED [ 20%]\n"
           "tests/gpu/test_gpu.py::test_c SKIPPED (no NVENC) [ 30%]\n")
    r = nightly.tests_from_log(log, 100.0, 100.0)
    assert not r["passed"] and r["tests"] == 3 and r["failures"] == 1 and r["skipped"] == 1
    assert r["headline"].startswith("CUT at 100 s: 2 ran, 1 failed")


def test_baseline_comparison_flags_a_drop(nightly, tmp_path):
    old = nightly.summary_path(tmp_path, MACHINE["gpu"], "20261101")
    nightly.update_summary(old, MACHINE, "throughput", {"passed": True, "ddr_fps": 1000.0, "e2e_fps": 200.0})
    today = nightly.summary_path(tmp_path, MACHINE["gpu"], "20261125")
    data = nightly.update_summary(today, MACHINE, "throughput", {"passed": True, "ddr_fps": 700.0, "e2e_fps": 199.0})
    assert nightly.compare_with_baseline(tmp_path, MACHINE["gpu"], today, data) == [
        "ddr_fps -30% against nvidia-h100-80gb-hbm3-20261101.json"]


def test_mosaic_check_on_the_strict_stand_in(nightly, monkeypatch, tmp_path):
    """The agreement part's mosaic check, with the strict CuPy stand-in and the kernel emulator."""
    import strict_cupy
    from cuda_emu import compiler

    if compiler() is None:
        pytest.skip("g++ is needed to run the CUDA kernels on the CPU")
    monkeypatch.setitem(sys.modules, "cupy", strict_cupy.module(tmp_path))
    from skimage import data

    frames = [data.astronaut()[:300, :400].copy() for _ in range(2)]
    boxes = [np.array([[180, 60, 270, 180]], np.float32), np.zeros((0, 4), np.float32)]
    assert nightly.mosaic_matches(frames, boxes)


def test_refuses_cleanly_without_a_gpu(nightly, monkeypatch, capsys):
    from trt_anon import cuda

    monkeypatch.setattr(cuda, "available", lambda: False)
    assert nightly.main(["--part", "tests"]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err


def test_streamed_face_check_passes_output_and_fails_input(nightly, tmp_path):
    """The throughput part's frame-by-frame check: an anonymized clip passes, the input itself fails."""
    from synth import Face, make_clip

    import trt_anon

    clip = make_clip(tmp_path / "c.mp4", 320, 180, frames=12, audio=0, faces=[Face(60, (40, 40), (3.0, 0.5))])
    trt_anon.process(clip.path, tmp_path / "o.mp4", backend="cpu")
    assert nightly.faces_mosaicked(clip, tmp_path / "o.mp4") is True
    assert "not mosaicked" in nightly.faces_mosaicked(clip, clip.path)


def test_the_whole_acceptance_runs_within_its_budget_on_the_stand_ins(nightly, strict_gpu, monkeypatch, tmp_path):  # noqa: F811
    """The one command a GPU machine runs first, end to end on the CPU: CuPy (strict stand-in, kernels
    emulated), CPU PyTorch as CUDA, PyAV's batches uploaded and decoded ahead in their thread, libx264 from GPU
    YUV; three parts, a 360 s budget, the summary written part by part, the clip made beforehand and carried.
    tests/gpu cannot run here (a child process has no stand-ins), so that part must say that no GPU test ran,
    as a FAIL."""
    monkeypatch.setattr(nightly, "gpu_decoder_installed", lambda: False)
    monkeypatch.setattr(nightly.GpuMemoryPeak, "__enter__", lambda self: self)
    monkeypatch.setattr(nightly.GpuMemoryPeak, "__exit__", lambda self, *exc: None)
    from trt_anon import decode, stages

    def no_gpu_decoder(*a):
        raise stages.BackendError("no GPU decoder on this machine")
    monkeypatch.setattr(stages, "select_gpu_decoder", no_gpu_decoder)
    monkeypatch.setattr(decode, "select_gpu_decoder", no_gpu_decoder)
    out, clips = tmp_path / "summary", tmp_path / "clips"
    assert nightly.main(["--make-clips", str(clips), "--frames", "40", "--size", "640x360"]) == 0
    code = nightly.main(["--parts", "throughput,agreement,tests", "--budget-s", "360", "--frames", "40",
                         "--agreement-frames", "20", "--size", "640x360", "--out", str(out), "--clips", str(clips),
                         "--profile", "--x264-frames", "20", "--at-once", "2"])
    data = json.loads(next(out.glob("*.json")).read_text())
    parts = data["parts"]
    assert set(parts) == {"throughput", "agreement", "tests"} and code == 1
    t = parts["throughput"]
    assert t["passed"], t["problems"]
    assert t["backends"] == {"decode": "pyav (uploaded)", "detect": "torch-cuda-fp16", "redact": "cupy",
                             "encode": "libx264 (gpu yuv)"} and t["frames"] == 40 and t["size"] == "640x360"
    assert "PyTorch CUDA FP16 (not TensorRT)" in t["headline"]
    # decode+detect+redact by the wall clock, its looks and their GPU time
    assert t["ddr_measure"] == "wall" and t["ddr_frames"] == 40 and t["ddr_fps"] > 0
    assert t["ddr_backends"] == {"decode": "pyav (uploaded)", "detect": "torch-cuda-fp16", "redact": "cupy"}
    assert 0 < t["frames_looked"] <= 40 and sum(int(k) * v for k, v in t["call_sizes"].items()) == t["frames_looked"]
    assert t["gpu_ms_per_looked_frame"] > 0 and set(t["gpu_ms_by_call_size"]) == set(t["call_sizes"])
    # each stage alone, and the trace
    assert t["x264_alone"]["frames"] == 20 and t["x264_alone"]["fps"] > 0
    assert isinstance(t["decoders_alone"]["pyav (uploaded)"], float)
    assert t["at_once"]["files"] == 2 and t["at_once"]["frames"] == 80 and t["at_once"]["fps"] > 0
    assert t["decoders_alone"]["pynvvideocodec"].startswith("not run")
    assert set(t["detector_alone"]["eager"]) == {"1", "4", "8", "16", "24", "32"}
    assert t["profile"]["trace"] == "profile-trace.json.gz" and (out / "profile-trace.json.gz").stat().st_size > 0
    assert (out / "profile.txt").read_text().strip() and t["profile"]["top"]
    assert t["targets"] == {}  # a quick look at 640x360: the 1080p targets do not apply
    a = parts["agreement"]
    assert a["passed"], a["problems"]
    assert a["frames"] == 20 and a["mosaic_equal"] and a["det_size"] == 640 and a["boxes"] > 0
    assert a["detectors"] == {"cpu": "onnxruntime", "gpu": "torch-cuda-fp16"}, a["detectors"]
    assert a["colour"]["skipped"].startswith("no GPU decoder")
    assert not parts["tests"]["passed"] and parts["tests"]["headline"].startswith("0 ran")
    assert sum(p["part_seconds"] for p in parts.values()) < 360
    md = next(out.glob("*.md")).read_text()
    assert "| throughput | PASS |" in md and "## Where the time goes" in md and "looks:" in md
