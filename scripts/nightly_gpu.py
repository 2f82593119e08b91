"""GPU acceptance: the one command to run first on any GPU, in parts that fit a 10-minute call.

    python scripts/nightly_gpu.py                          # every part
    python scripts/nightly_gpu.py --parts tests            # tests/gpu
    python scripts/nightly_gpu.py --parts throughput       # 2000-frame 1080p H.264 on the GPU stages
    python scripts/nightly_gpu.py --parts agreement        # CPU vs GPU: boxes IoU >= 0.9, mosaic equal
    python scripts/nightly_gpu.py --budget-s 360 --out DIR # stop starting parts after 360 s; summary folder

Each part adds its result to one summary per GPU and day, ``<gpu>-<YYYYMMDD>.json`` and ``.md`` in
``--out``, meant to be committed so the evidence outlives the machine. Throughput reports
decode+detect+redact fps and end-to-end fps separately (no NVENC on H100/H200: libx264 on the CPU
is the end-to-end wall there), seconds per stage, set-up time (a TensorRT build lands there, not in
either fps) and the peak GPU memory in use. Each part checks which backends ran (a GPU detector and
the CuPy redactor; DALI or PyNvVideoCodec when installed) and says so plainly: a run on the PyTorch
detector is reported as such, never as TensorRT. ``--budget-s`` bounds the run: the tests part gets
at most its share of what is left, and a part is not started once the budget is spent, so a short
GPU window still ends with a summary. A summary from an earlier day for the same GPU is the
baseline: a drop of more than 20% fails. Exit 0 = every part asked for ran and passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # helpers.py, and synth.py (clips with real faces)
PARTS = ("tests", "throughput", "agreement")
TOLERANCE = 0.20
IOU_MIN = 0.9


# --- the summary: one JSON + Markdown per GPU and day, each part filling its own section ---------
def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def summary_path(out: Path, gpu: str, day: str) -> Path:
    return out / f"{slug(gpu)}-{day}.json"


def update_summary(path: Path, machine: dict, part: str, result: dict) -> dict:
    """Merge one part's result into the summary at ``path`` (JSON) and rewrite its Markdown twin."""
    data = json.loads(path.read_text()) if path.exists() else {"machine": machine, "parts": {}}
    data["machine"].update(machine)
    data["parts"][part] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    path.with_suffix(".md").write_text(markdown(data))
    return data


def markdown(data: dict) -> str:
    m, parts = data["machine"], data["parts"]
    lines = [f"# GPU acceptance: {m.get('gpu')} ({m.get('date')})", "",
             f"Machine: {m.get('gpu')}, {m.get('gpu_memory_gib', '?')} GiB, CPU {m.get('cpu')} x{m.get('cores')}; "
             f"commit {m.get('commit')}; " + ", ".join(f"{k} {v}" for k, v in sorted(m.get("versions", {}).items())),
             "", "| part | result | figures |", "|---|---|---|"]
    for name in PARTS:
        if name not in parts:
            lines.append(f"| {name} | not run | |")
            continue
        r = parts[name]
        lines.append(f"| {name} | {'PASS' if r.get('passed') else 'FAIL'} | {r.get('headline', '')} |")
    for name, r in parts.items():
        if r.get("problems"):
            lines += ["", f"{name} problems:", *[f"- {p}" for p in r["problems"]]]
    return "\n".join(lines) + "\n"


def machine_info() -> dict:
    from trt_anon import cuda

    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "cpu": platform.processor() or platform.machine(),
                            "python": platform.python_version()}
    try:
        info["cores"] = len(os.sched_getaffinity(0))
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if cuda.available():
        dev = cuda.device()
        info.update(gpu=dev["name"], cc=dev["cc"], gpu_memory_gib=round(dev["memory"] / 2**30, 1))
    versions = {}
    for mod in ("av", "cupy", "nvidia.dali", "torch", "tensorrt", "PyNvVideoCodec", "onnxruntime", "numpy"):
        try:
            versions[mod.split(".")[-1]] = str(__import__(mod, fromlist=["_"]).__version__)
        except Exception:
            pass
    info["versions"] = versions
    try:
        git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
        info["commit"] = git("rev-parse", "--short", "HEAD").stdout.strip() or "unknown"
        if git("diff", "--quiet", "HEAD", "--", "trt_anon", "scripts", "tests").returncode:
            info["commit"] += " with uncommitted changes"  # the figures are not that commit's alone
    except OSError:
        info["commit"] = "unknown"
    return info


# --- parts ----------------------------------------------------------------------------------------
def part_tests(args) -> dict:
    """tests/gpu in a child pytest, stopped at ``args.timeout`` (its share of the budget); counts from
    its JUnit XML, or from its verbose log when it was stopped before writing one."""
    import xml.etree.ElementTree as ET

    junit = Path(tempfile.mkdtemp(prefix="nightly-")) / "junit.xml"
    log = args.out / "tests-log.txt"
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", f"--junitxml={junit}",
           str(ROOT / "tests" / "gpu")]
    # tests/gpu skip what this GPU lacks (NVENC on H100/H200, DALI): CI's rule that a skip fails is not theirs
    env = {k: v for k, v in os.environ.items() if k != "TRT_ANON_REQUIRE_REHEARSAL"}
    with log.open("w") as fh:
        try:
            code = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=args.timeout,
                                  env=env).returncode
        except subprocess.TimeoutExpired:
            code = None
    text = log.read_text(errors="replace")
    print(text[-6000:], flush=True)
    seconds = round(time.perf_counter() - t0, 1)
    if code is None or not junit.exists():
        return tests_from_log(text, seconds, args.timeout)
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    problems = [f"{c.get('classname')}::{c.get('name')}: {(c[0].get('message') or '')[:300]}"
                for c in suite.iter("testcase") for e in c if e.tag in ("failure", "error", "skipped")]
    ran = counts["tests"] - counts["skipped"]
    passed = code == 0 and counts["failures"] == counts["errors"] == 0 and ran > 0  # all skipped: no GPU test ran
    return {"passed": passed, **counts, "seconds": seconds, "problems": problems,
            "headline": f"{ran} ran, {counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"}


def tests_from_log(text: str, seconds: float, timeout: float | None) -> dict:
    """Counts from pytest's ``-v`` lines (``path::name PASSED``) of a run stopped at its time limit."""
    verdicts = re.findall(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.M)
    bad = [f"{name}: {v}" for name, v in verdicts if v in ("FAILED", "ERROR")]
    skipped = sum(v == "SKIPPED" for _, v in verdicts)
    problems = bad + [f"stopped after {timeout:.0f} s (its share of the budget): {len(verdicts)} tests had a verdict"]
    return {"passed": False, "tests": len(verdicts), "failures": len(bad), "errors": 0, "skipped": skipped,
            "seconds": seconds, "problems": problems,
            "headline": f"CUT at {timeout:.0f} s: {len(verdicts) - skipped} ran, {len(bad)} failed, {skipped} skipped"}


def gpu_decoder_installed() -> bool:
    """DALI or PyNvVideoCodec importable (whether it then runs is what the parts check)."""
    import importlib.util

    for name in ("nvidia.dali", "PyNvVideoCodec"):
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except ModuleNotFoundError:  # no "nvidia" namespace at all
            pass
    return False


def backend_problems(backends: dict) -> list[str]:
    """The GPU stages each part expects: a GPU detector, CuPy, a GPU-fed encoder, and a GPU decoder
    when one is installed (else PyAV's frames uploaded). Anything else is a failure, named."""
    problems = []
    if backends.get("detect") not in ("tensorrt-fp16", "torch-cuda-fp16"):
        problems.append(f"detector {backends.get('detect')!r} is not a GPU detector")
    if backends.get("redact") != "cupy":
        problems.append(f"redactor {backends.get('redact')!r} is not CuPy")
    want = ("dali", "pynvvideocodec") if gpu_decoder_installed() else ("pyav (uploaded)",)
    if backends.get("decode") not in want:
        problems.append(f"decoder {backends.get('decode')!r}, expected {' or '.join(want)}")
    enc = backends.get("encode", "")
    if not (enc.endswith("nvenc") or enc.endswith("(gpu yuv)")):
        problems.append(f"encoder {enc!r} is not fed from the GPU")
    return problems


def detector_words(backends: dict) -> str:
    """The detector in plain words: PyTorch is never reported as TensorRT."""
    return {"tensorrt-fp16": "TensorRT FP16", "torch-cuda-fp16": "PyTorch CUDA FP16 (not TensorRT)"}.get(
        backends.get("detect", ""), f"{backends.get('detect')} (not a GPU detector)")


class GpuMemoryPeak:
    """Peak device memory in use (total - free, every process), sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        self.peak, self._stop = 0, threading.Event()

    def __enter__(self) -> "GpuMemoryPeak":
        import cupy

        def sample():
            while not self._stop.is_set():
                free, total = cupy.cuda.runtime.memGetInfo()
                self.peak = max(self.peak, total - free)
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def throughput_figures(report, frames: int) -> dict:
    """fps that the report's per-stage seconds give: decode+detect+redact, end to end, per stage."""
    s = report.seconds
    ddr = s["decode"] + s["detect"] + s["redact"]
    run = report.wall - s.get("setup", 0.0)  # set-up (engine build, first batch) is reported on its own
    return {"frames": report.frames, "ddr_fps": round(frames / max(ddr, 1e-9), 1),
            "e2e_fps": round(report.frames / max(run, 1e-9), 1),
            "stage_seconds": {k: round(v, 3) for k, v in s.items()},
            "stage_fps": {k: round(frames / v, 1) for k, v in s.items() if v and k != "setup"},
            "wall_seconds": round(report.wall, 2), "backends": report.backends, "warnings": report.warnings}


def part_throughput(args) -> dict:
    """The fixed workload: 1080p30 H.264 with real faces and audio, GPU backend; correctness first."""
    from helpers import audio_packets, video_times

    import trt_anon

    clip = workload(args.cache, args.frames, args.size)
    out = Path(tempfile.mkdtemp(prefix="nightly-")) / "job.anon.mp4"
    with GpuMemoryPeak() as mem:
        report = trt_anon.process(clip.path, out, backend="auto", overwrite=True,
                                  json_path=out.with_suffix(".json"))
    res = throughput_figures(report, args.frames)
    res["gpu_memory_peak_gib"] = round(mem.peak / 2**30, 2)
    res["size"] = "{}x{}".format(*args.size)
    problems = backend_problems(report.backends)
    checks: list[tuple[str, Callable[[], Any]]] = [
        ("frame count", lambda: report.frames == args.frames or f"{report.frames} != {args.frames}"),
        ("timestamps", lambda: video_times(out) == video_times(clip.path) or "timestamps changed"),
        ("audio", lambda: audio_packets(out) == audio_packets(clip.path) or "audio packets changed"),
        ("every face mosaicked", lambda: faces_mosaicked(clip, out)),
    ]
    for name, check in checks:
        try:
            ok = check()
        except AssertionError as exc:
            ok = str(exc)
        if ok is not True:
            problems.append(f"{name}: {ok}")
    if problems:  # the boxes of every frame, next to the summary, to see what the detector missed
        shutil.copy(out.with_suffix(".json"), args.out / "throughput-boxes.json")
    res.update(passed=not problems, problems=problems,
               headline=(f"decode+detect+redact {res['ddr_fps']:.0f} fps, end to end {res['e2e_fps']:.0f} fps "
                         f"({args.frames} frames {args.size[1]}p H.264; detector {detector_words(report.backends)}; "
                         f"{'/'.join(report.backends.values())}); "
                         f"GPU memory peak {res['gpu_memory_peak_gib']} GiB; set-up "
                         f"{report.seconds.get('setup', 0):.1f} s"))
    return res


def faces_mosaicked(clip, out: Path, max_dev: float = 4.0, max_bg: float = 4.0) -> bool | str:
    """tests/helpers.frame_problem on every frame, streamed (2000 1080p frames do not fit in a list
    twice): every ground-truth face in view mosaicked (the part of it in view: a face mostly behind
    another is not one to find), the background the input's within codec noise."""
    import av
    from helpers import frame_problem

    with av.open(str(clip.path)) as a, av.open(str(out)) as b:
        for i, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0))):
            problem = frame_problem(clip, i, fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24"),
                                    max_dev=max_dev, max_bg=max_bg)
            if problem is not None:
                return problem
    return True


def workload(cache: Path, frames: int, size: tuple[int, int] = (1920, 1080)):
    """The clip (made once per machine and size, kept in ``cache``): three faces, one entering late;
    positions and sizes scale with the frame (1920x1080 is the measured workload)."""
    from synth import Face, make_clip

    w, h = size
    k = w / 1920
    cache.mkdir(parents=True, exist_ok=True)
    return make_clip(cache / f"job-{w}x{h}-{frames}.mp4", w, h, frames=frames, crf=20, faces=[
        Face(160 * k, (100 * k, 200 * k), (3.0 * 600 / frames * k, 0.5 * 600 / frames * k)),
        Face(90 * k, (1500 * k, 300 * k), (-2.0 * 600 / frames * k, 0.2 * 600 / frames * k), flip=True),
        Face(48 * k, (900 * k, 100 * k), (0.5 * 600 / frames * k, 0.5 * 600 / frames * k), enter=frames // 6)])


def hits(json_path: Path) -> list:
    import numpy as np

    frames = json.loads(json_path.read_text())["frames"]
    return [np.array([f["box"] for f in fr["faces"] if f["kind"] == "hit"], np.float32).reshape(-1, 4)
            for fr in frames]


def box_agreement(cpu: list, gpu: list, iou_min: float = IOU_MIN) -> dict:
    """Per frame, do the CPU's and the GPU's detected boxes pair up one to one with IoU >= ``iou_min``?"""
    import numpy as np

    from trt_anon.detect.detections import iou

    bad, worst, n_boxes = [], 1.0, 0
    for i, (a, b) in enumerate(zip(cpu, gpu)):
        n_boxes += len(a)
        if len(a) != len(b):
            bad.append(f"frame {i}: {len(a)} CPU boxes, {len(b)} GPU boxes")
            continue
        if len(a):
            best = float(np.min(np.maximum(iou(a, b).max(axis=1), iou(b, a).max(axis=1))))
            worst = min(worst, best)
            if best < iou_min:
                bad.append(f"frame {i}: IoU {best:.3f} < {iou_min}")
    if len(cpu) != len(gpu):
        bad.append(f"{len(cpu)} CPU frames, {len(gpu)} GPU frames")
    return {"frames": len(cpu), "boxes": n_boxes, "min_iou": round(worst, 4), "frames_disagreeing": len(bad),
            "problems": bad[:20]}


def part_agreement(args) -> dict:
    """The same 1080p clip through the CPU (FP32 model, same threshold, same detection size) and the
    GPU: boxes agree (IoU >= 0.9, one to one), and the GPU mosaic equals the NumPy reference on the
    CPU's boxes. One detection size for both (full width): "auto" differs by backend (2/3 on the
    CPU), which would measure scale rather than the GPU."""
    from helpers import decode_frames

    import trt_anon

    clip = workload(args.cache, args.agreement_frames, args.size)
    work = Path(tempfile.mkdtemp(prefix="nightly-"))
    runs = {}
    size = args.size[0] // 32 * 32
    for name, opts in (("cpu", {"backend": "cpu", "cpu_precision": "fp32"}), ("gpu", {"backend": "auto"})):
        # every frame looked at (detect_every=1): "auto" plans per batch, and the two batch differently (8, 32)
        runs[name] = trt_anon.process(clip.path, work / f"{name}.mp4", json_path=work / f"{name}.json",
                                      det_size=size, detect_every=1, **opts)
    res = box_agreement(hits(work / "cpu.json"), hits(work / "gpu.json"))
    mosaic_equal = mosaic_matches(decode_frames(clip.path)[:64], hits(work / "cpu.json")[:64])
    problems = (list(res["problems"]) + backend_problems(runs["gpu"].backends)
                + ([] if mosaic_equal else ["GPU mosaic differs from the NumPy reference"]))
    res.update(mosaic_equal=mosaic_equal, passed=not problems, problems=problems, det_size=size,
               backends={k: r.backends for k, r in runs.items()},
               headline=(f"{res['frames'] - res['frames_disagreeing']}/{res['frames']} frames agree "
                         f"({res['boxes']} CPU boxes, min IoU {res['min_iou']}; {runs['gpu'].backends['detect']} "
                         f"vs {runs['cpu'].backends['detect']} at {size} px); mosaic "
                         f"{'equal' if mosaic_equal else 'DIFFERENT'}"))
    return res


def mosaic_matches(frames: list, boxes: list) -> bool:
    """GPU mosaic == NumPy reference, bit for bit, on real decoded frames and real (grown) boxes."""
    import numpy as np

    from trt_anon.detect.detections import Regions
    from trt_anon.redact import NumpyRedactor, redaction_boxes
    from trt_anon.redact.gpu import CupyRedactor

    h, w = frames[0].shape[:2]
    grown = [redaction_boxes(Regions(b, np.ones(len(b), np.float32), np.zeros(len(b), np.uint8), np.arange(len(b)), b),
                             "face", 12, 0.1, w, h) for b in boxes]
    batch = np.stack(frames)
    ref = NumpyRedactor(25)(batch.copy(), grown)
    xp = __import__("cupy")
    got = CupyRedactor(25)(xp.asarray(batch), grown)
    return bool(np.array_equal(xp.asnumpy(got), ref))


def compare_with_baseline(out: Path, gpu: str, today: Path, data: dict) -> list[str]:
    """A >20% drop against the latest earlier summary for this GPU is a failure."""
    earlier = sorted(p for p in out.glob(f"{slug(gpu)}-*.json") if p != today)
    if not earlier or "throughput" not in data["parts"]:
        return []
    base = json.loads(earlier[-1].read_text())["parts"].get("throughput", {})
    if base.get("size", "1920x1080") != data["parts"]["throughput"].get("size", "1920x1080"):
        return []  # another workload: not comparable
    drops = []
    for k in ("ddr_fps", "e2e_fps"):
        if base.get(k) and data["parts"]["throughput"].get(k):
            drop = 1 - data["parts"]["throughput"][k] / base[k]
            print(f"{k}: {data['parts']['throughput'][k]:.0f} vs {base[k]:.0f} in {earlier[-1].name} ({-drop:+.0%})")
            if drop > TOLERANCE:
                drops.append(f"{k} {-drop:+.0%} against {earlier[-1].name}")
    return drops


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit() and int(w) >= 64 and int(h) >= 64 and int(w) % 2 == int(h) % 2 == 0):
        raise argparse.ArgumentTypeError(f"size is WIDTHxHEIGHT, even, at least 64x64, not {text!r}")
    return int(w), int(h)


def parse_parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    if parts == ("all",):
        return PARTS
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)} (comma-separated) or all, not {text!r}")
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", type=parse_parts, default=PARTS, help="comma-separated, in the order to run "
                    f"(default {','.join(PARTS)})")
    ap.add_argument("--budget-s", type=float, default=None, help="seconds for the whole run: no part starts "
                    "after it, and tests get at most their share of what is left")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "gpu", help="summary folder")
    ap.add_argument("--frames", type=int, default=2000, help="throughput clip length")
    ap.add_argument("--size", type=parse_size, default=(1920, 1080), help="clip size WxH (default 1920x1080, the "
                    "measured workload; smaller only for a quick look)")
    ap.add_argument("--agreement-frames", type=int, default=150)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "trt_anon_nightly",
                    help="where the generated clips are kept between runs")
    args = ap.parse_args(argv)

    from trt_anon import cuda
    if not cuda.available():
        print("nightly: error: no CUDA GPU usable by CuPy here", file=sys.stderr)
        return 1
    start = time.monotonic()
    machine = machine_info()
    path = summary_path(args.out, machine["gpu"], time.strftime("%Y%m%d"))
    print(f"nightly on {machine['gpu']}: summary {path}", flush=True)
    runners = {"tests": part_tests, "throughput": part_throughput, "agreement": part_agreement}
    ok, data = True, {"parts": {}}
    for k, part in enumerate(args.parts):
        left = None if args.budget_s is None else args.budget_s - (time.monotonic() - start)
        args.timeout = None if left is None else left / (len(args.parts) - k)
        t0 = time.perf_counter()
        if left is not None and left < 15:
            result = {"passed": False, "headline": "not run: budget spent",
                      "problems": [f"not started: {max(left, 0):.0f} s of the {args.budget_s:.0f} s budget left"]}
        else:
            try:
                result = runners[part](args)
            except Exception as exc:  # a crash is a result too: it goes in the summary
                result = {"passed": False, "problems": [f"{type(exc).__name__}: {exc}"], "headline": "crashed"}
        result["part_seconds"] = round(time.perf_counter() - t0, 1)
        data = update_summary(path, machine, part, result)
        print(f"{part}: {'PASS' if result['passed'] else 'FAIL'}: {result.get('headline', '')} "
              f"[{result['part_seconds']} s]", flush=True)
        ok &= bool(result["passed"])
    drops = compare_with_baseline(args.out, machine["gpu"], path, data)
    if drops:
        print("nightly: FAIL: slower than the baseline: " + "; ".join(drops), file=sys.stderr)
    print(f"summary: {path} and {path.with_suffix('.md').name} ({time.monotonic() - start:.0f} s)")
    return 0 if ok and not drops else 1


if __name__ == "__main__":
    sys.exit(main())
