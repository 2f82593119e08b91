"""GPU acceptance: the one command to run first on any GPU, in parts that fit a 10-minute call.

    python scripts/nightly_gpu.py --make-clips .nightly-clips  # any machine, no GPU needed: the clip (~9 MiB)
    python scripts/nightly_gpu.py --clips .nightly-clips       # on the GPU: every part, on that clip
    python scripts/nightly_gpu.py --parts tests            # tests/gpu
    python scripts/nightly_gpu.py --parts throughput       # 2000-frame 1080p H.264 on the GPU stages
    python scripts/nightly_gpu.py --parts agreement        # CPU vs GPU detector on the same pixels, mosaic equal
    python scripts/nightly_gpu.py --budget-s 330 --out DIR --profile   # a bound, a summary folder, a trace

Each part adds its result to one summary per GPU and day, ``<gpu>-<YYYYMMDD>.json`` and ``.md`` in
``--out``, meant to be committed so the evidence outlives the machine. Throughput measures, on one clip:
decode+detect+redact as wall-clock fps with the encoder discarding (decoder, detector and redactor
working as in a run); end to end (``process()``, every frame checked); which frames the detector
looked at, in calls of which sizes, and the GPU time of each call (CUDA events); each GPU decoder
alone; libx264 alone on the same frames (no NVENC on H100/H200: the end-to-end wall there); the
detector alone per batch size, eager and as CUDA graphs; several copies at once (as ``trt-anon a b c`` runs
them); peak GPU memory; and with ``--profile`` a
``torch.profiler`` trace of three batches. Set-up (a TensorRT build, cuDNN's autotuning) is kept out
of every fps. Each part checks which backends ran and says so plainly: a run on the PyTorch detector
is reported as such, never as TensorRT. ``--budget-s`` bounds the run: the tests part gets at most its
share of what is left, and a part is not started once the budget is spent, so a short GPU window
still ends with a summary. A summary from an earlier day for the same GPU is the baseline: a drop of
more than 20% fails. Exit 0 = every part asked for ran and passed (the speed targets are reported,
met or not, and fail nothing).
"""
from __future__ import annotations

import argparse
import itertools
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
SHARE = {"tests": 1, "throughput": 3, "agreement": 1}  # of the budget left, when a part starts
TOLERANCE = 0.20
IOU_MIN = 0.9
COLOUR_MEAN_MAX = 1.5     # mean |GPU decoder's RGB - PyAV's| on the same frames (libswscale's rounding differs)
# What a 1080p H.264 file should reach on an H200 (docs/gpu.md): reported beside the figures, met or not
TARGETS = {"ddr_fps": (">=", 500.0), "e2e_over_x264": (">=", 0.9), "gpu_ms_per_looked_frame": ("<=", 1.5),
           "gpu_memory_peak_gib": ("<=", 16.0), "at_once_fps": (">=", 2000.0)}


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
    if "ddr_loop_seconds" in parts.get("throughput", {}):
        lines += throughput_markdown(parts["throughput"])
    for name, r in parts.items():
        if r.get("problems"):
            lines += ["", f"{name} problems:", *[f"- {p}" for p in r["problems"]]]
    return "\n".join(lines) + "\n"


def throughput_markdown(r: dict) -> list[str]:
    """Where the time goes, from the throughput part: targets, the loop's seconds, looks, each stage alone."""
    lines = ["", "## Where the time goes (throughput)", ""]
    if r.get("targets"):
        lines += ["| target | goal | got | met |", "|---|---|---|---|"]
        lines += [f"| {k} | {t['goal']} | {t['got']} | {'yes' if t['met'] else 'NO'} |"
                  for k, t in r["targets"].items()]
        lines.append("")
    loop = ", ".join(f"{k} {v} s" for k, v in r["ddr_loop_seconds"].items())
    lines.append(f"- decode+detect+redact: {r['ddr_frames']} frames in {r['ddr_wall_seconds']} s of wall clock "
                 f"(set-up {r['ddr_setup_seconds']} s apart); the loop's own seconds: {loop} (decode: waiting for "
                 "the next batch; encode: the discarding sink waiting for the redaction)")
    lines.append(f"- looks: {r['frames_looked']} of {r['ddr_frames']} frames ({r['look_share']:.0%}) in {r['calls']} "
                 f"calls, by size {r['call_sizes']}")
    if "gpu_ms_per_call" in r:
        lines.append(f"- GPU ms per detector call {r['gpu_ms_per_call']}; per looked frame "
                     f"{r['gpu_ms_per_looked_frame']}; median per call by size {r['gpu_ms_by_call_size']}")
    if "stage_seconds" in r:
        lines.append(f"- end to end: {r['e2e_fps']} fps; the loop's seconds {r['stage_seconds']}")
    for key, words in (("decoders_alone", "each decoder alone (fps)"), ("x264_alone", "libx264 alone"),
                       ("at_once", "several copies at once, decode+detect+redact"),
                       ("detector_alone", "detector alone, GPU ms per frame by batch size"),
                       ("profile", "torch.profiler")):
        if key in r:
            lines.append(f"- {words}: {r[key]}")
    if r.get("skipped"):
        lines.append(f"- skipped: {r['skipped']}")
    return lines


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


def e2e_figures(report) -> dict:
    """End to end from a ``process()`` report: frames over the run's wall time less its set-up (an engine build,
    cuDNN's autotuning), and the seconds the loop spent in each stage (decode: waiting for the next batch)."""
    s = report.seconds
    run = report.wall - s.get("setup", 0.0)
    return {"frames": report.frames, "e2e_fps": round(report.frames / max(run, 1e-9), 1),
            "stage_seconds": {k: round(v, 3) for k, v in s.items()}, "wall_seconds": round(report.wall, 2),
            "backends": report.backends, "warnings": report.warnings}


class Looks:
    """The detector as the loop calls it, counting what it looks at: the frames of each call and, on a GPU, the
    call's GPU time between two CUDA events on the detector's stream (after the stream has caught up with the
    caller's, so the wait for decoding is not counted)."""

    def __init__(self, detector) -> None:
        self.detector, self.name = detector, detector.name
        self.calls: list[tuple[int, Any, Any]] = []

    def __call__(self, frames):
        stream = getattr(self.detector, "stream", None)
        if stream is None:
            self.calls.append((len(frames), None, None))
            return self.detector(frames)
        import cupy as cp

        stream.wait_event(cp.cuda.get_current_stream().record())
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record(stream)
        found = self.detector(frames)
        end.record(stream)
        self.calls.append((len(frames), start, end))
        return found

    def figures(self, frames: int) -> dict:
        import numpy as np

        sizes = [n for n, _, _ in self.calls]
        out = {"frames_looked": sum(sizes), "look_share": round(sum(sizes) / max(frames, 1), 3), "calls": len(sizes),
               "call_sizes": {str(k): sizes.count(k) for k in sorted(set(sizes))}}
        timed = [(n, a, b) for n, a, b in self.calls if a is not None]
        if timed:
            import cupy as cp

            timed[-1][2].synchronize()
            ms = np.array([cp.cuda.get_elapsed_time(a, b) for _, a, b in timed])
            out.update(gpu_ms_per_call={"mean": round(float(ms.mean()), 3), "median": round(float(np.median(ms)), 3),
                                        "max": round(float(ms.max()), 3)},
                       gpu_ms_per_looked_frame=round(float(ms.sum()) / max(sum(n for n, _, _ in timed), 1), 3),
                       gpu_ms_by_call_size={str(k): round(float(np.median([m for (n, _, _), m in zip(timed, ms)
                                                                            if n == k])), 3)
                                            for k in sorted({n for n, _, _ in timed})})
        return out


class Discard:
    """A sink that drops the frames: with it the loop measures decode+detect+redact alone (the loop still waits
    for each batch's redaction to be done on the GPU before it lets the batch go)."""

    name = "discard"

    def __init__(self) -> None:
        self.last_pts: int | None = None

    def encode(self, frames, pts: list[int]) -> None:
        self.last_pts = pts[-1]

    def close(self) -> None:
        pass


def open_stages(path: Path, **options):
    """What ``process()`` sets up for ``path`` on the GPU path, without an output: (plan, stages.Chosen, the PyAV
    source that the choice read the first batch from, notes). Close ``source.container`` when done."""
    from trt_anon import Config, media, stages
    from trt_anon.decode import PyAVDecoder
    from trt_anon.plan import plan

    job = plan(path, Path(tempfile.mkdtemp(prefix="nightly-")) / "unused.mp4", Config.from_options(**options))
    container = media.open_input(path)
    info = media.VideoInfo.of(container, media.container.video_stream(container))
    source = PyAVDecoder(container, job.config.batch_size)
    notes: list[str] = []
    try:
        chosen = stages.choose(path, source, info, job.config, notes)
    except BaseException:
        container.close()
        raise
    return job, chosen, source, notes


def ddr_run(path: Path, frames: int) -> tuple[dict, Any, Any]:
    """Decode+detect+redact over the whole clip, the encoder discarding, timed by the wall clock from the first
    batch asked for to the last let go; the look counts and GPU time per call. Returns (figures, plan, chosen):
    the profile and the detector-alone measures reuse the warmed-up stages."""
    from trt_anon import pipeline
    from trt_anon.report import Report

    job, chosen, source, notes = open_stages(path)
    looks = Looks(chosen.detector)
    report = Report(str(path), "discarded")
    try:
        t0 = time.perf_counter()
        pipeline.run(pipeline.Stages(chosen.decoder, looks, chosen.redactor, Discard()), job.config, report,
                     source.rotation)
        wall = time.perf_counter() - t0
    finally:
        source.container.close()
    res = {"ddr_fps": round(report.frames / max(wall, 1e-9), 1), "ddr_wall_seconds": round(wall, 2),
           "ddr_setup_seconds": round(chosen.setup, 2), "ddr_frames": report.frames,
           "ddr_loop_seconds": {k: round(v, 3) for k, v in report.seconds.items()},
           "ddr_backends": {"decode": chosen.decoder_name, "detect": chosen.detector.name,
                            "redact": chosen.redactor.name},
           **looks.figures(report.frames)}
    if notes:
        res["ddr_warnings"] = notes
    return res, job, chosen


def stream_params(path: Path, batch: int) -> tuple:
    """(time base, colour space) of ``path``'s video as the run reads them (its first batch), for the GPU decoders."""
    from trt_anon import media
    from trt_anon.decode import PyAVDecoder

    probe = PyAVDecoder(media.open_input(path), batch)
    try:
        next(iter(probe))
        return probe.time_base, probe.colorspace
    finally:
        probe.container.close()


def ddr_at_once(path: Path, n: int) -> dict:
    """``n`` copies of the clip at once, as ``trt-anon a b c --backend gpu`` runs several files: each its own
    decoder (an NVDEC session each), detector, redactor and loop in a thread, the encoders discarding;
    decode+detect+redact frames per second together by the wall clock, the set-ups (done first) apart."""
    from concurrent.futures import ThreadPoolExecutor

    from trt_anon import pipeline
    from trt_anon.report import Report

    opened = [open_stages(path) for _ in range(n)]

    def one(stages) -> int:
        job, chosen, source, _ = stages
        report = Report(str(path), "discarded")
        try:
            pipeline.run(pipeline.Stages(chosen.decoder, chosen.detector, chosen.redactor, Discard()), job.config,
                         report, source.rotation)
        finally:
            source.container.close()
        return report.frames

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n, thread_name_prefix="nightly-file") as pool:
        frames = list(pool.map(one, opened))
    wall = time.perf_counter() - t0
    return {"files": n, "frames": sum(frames), "wall_seconds": round(wall, 2),
            "fps": round(sum(frames) / max(wall, 1e-9), 1),
            "setup_seconds": round(sum(chosen.setup for _, chosen, _, _ in opened), 2)}


def gpu_decoders(path: Path, batch: int) -> dict[str, Callable[[], Any]]:
    """Makers of each GPU-path decoder for ``path`` (DALI, PyNvVideoCodec, PyAV uploaded), as the run makes them."""
    from trt_anon import media, stages
    from trt_anon.decode import PyAVDecoder

    time_base, colorspace = stream_params(path, batch)

    def dali():
        from trt_anon.decode.dali import DaliDecoder
        return DaliDecoder(path, batch, time_base, colorspace=colorspace)

    def nvdec():
        from trt_anon.decode.nvdec import NvDecoder
        return NvDecoder(path, batch, time_base, colorspace=colorspace)

    return {"dali": dali, "pynvvideocodec": nvdec,
            "pyav (uploaded)": lambda: stages.Uploaded(PyAVDecoder(media.open_input(path), batch))}


def decoders_alone(path: Path, batch: int) -> dict:
    """Each GPU-path decoder alone over the clip, to the last frame on the device: frames per second, or why not."""
    import cupy as cp

    from trt_anon.errors import first_line

    out: dict[str, Any] = {}
    for name, make in gpu_decoders(path, batch).items():
        try:
            dec = make()
            t0 = time.perf_counter()
            n = sum(len(b) for b in dec)
            cp.cuda.runtime.deviceSynchronize()
            out[name] = round(n / max(time.perf_counter() - t0, 1e-9), 1)
        except Exception as exc:
            out[name] = f"not run: {first_line(exc)}"
    return out


def x264_alone(path: Path, config, limit: int) -> dict:
    """libx264 with the run's settings (crf, preset, every core) on the clip's first ``limit`` frames, decoded to
    YUV 4:2:0 beforehand: what the software encoder alone reaches on this machine, the end-to-end wall without
    NVENC."""
    import av

    from trt_anon.encode.pyav import PyAVEncoder

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        rate, time_base = stream.average_rate, stream.time_base
        frames = [f.reformat(format="yuv420p") for f in itertools.islice(c.decode(stream), limit)]
    colorspace = (getattr(frames[0], "colorspace", 2), getattr(frames[0], "color_range", 0))
    with tempfile.TemporaryDirectory(prefix="nightly-") as d, av.open(str(Path(d) / "x264.mp4"), "w") as out:
        enc = PyAVEncoder(out, frames[0].width, frames[0].height, rate, time_base, colorspace, config.crf,
                          config.preset)
        enc.stream.codec_context.thread_count = 0  # as GpuYuvEncoder: every core
        t0 = time.perf_counter()
        for f in frames:
            enc._mux(enc.stream.encode(f))
        enc.close()
        secs = time.perf_counter() - t0
    return {"frames": len(frames), "fps": round(len(frames) / max(secs, 1e-9), 1), "crf": config.crf,
            "preset": config.preset, "cores": os.cpu_count()}


def first_frames(path: Path, n: int) -> list:
    """The first ``n`` frames of ``path`` as RGB arrays (PyAV), without decoding the rest."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        return [f.to_ndarray(format="rgb24") for f in itertools.islice(c.decode(stream), n)]


def detector_alone(path: Path, chosen, reps: int = 3) -> dict:
    """The PyTorch detector alone on the clip's first frames, at each of its batch sizes: median GPU ms per frame
    (CUDA events), eager and replayed as CUDA graphs (TRT_ANON_CUDA_GRAPHS=1), each warmed up first."""
    import cupy as cp
    import numpy as np

    from trt_anon import cuda
    from trt_anon.detect.torch_cuda import TorchCudaDetector
    from trt_anon.errors import first_line

    det = chosen.detector
    if not isinstance(det, TorchCudaDetector):
        return {"skipped": f"the detector is {det.name}"}
    batch = cp.asarray(np.stack(first_frames(path, det.max_batch)))
    out: dict[str, Any] = {}
    for mode in ("eager", "graphs"):
        try:
            d = det if mode == "eager" else TorchCudaDetector(det.det_size, det.threshold, det.max_batch, det.model,
                                                              frame_hw=batch.shape[1:3], graphs=True)
            looks = Looks(d)
            for b in d.buckets:
                for _ in range(reps):
                    looks(batch[:b])
            looks.calls[-1][2].synchronize()
            out[mode] = {str(b): round(float(np.median([cp.cuda.get_elapsed_time(s, e) for n, s, e in looks.calls
                                                        if n == b])) / b, 3) for b in d.buckets}
            del d, looks
        except Exception as exc:
            out[mode] = f"not run: {first_line(exc)}"
        cuda.free_memory()
    return out


def profile_run(path: Path, job, chosen, out_dir: Path, batches: int = 3) -> dict:
    """``torch.profiler`` over ``batches`` batches of the loop (after one to settle), the warmed-up detector and
    redactor, a fresh decoder: a gzipped Chrome/Perfetto trace and the busiest operations in ``out_dir``."""
    import gzip

    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from trt_anon import media, pipeline, stages
    from trt_anon.decode import PyAVDecoder, select_gpu_decoder
    from trt_anon.decode.ahead import Ahead
    from trt_anon.errors import BackendError
    from trt_anon.report import Report

    batch = job.config.batch_size
    try:
        inner = select_gpu_decoder(path, batch, *stream_params(path, batch))
    except BackendError:
        inner = stages.Uploaded(PyAVDecoder(media.open_input(path), batch))
    cuda_on = torch.cuda.is_initialized()  # (a stand-in for CUDA says it is available, never initialized)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda_on else [])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=batches)) as prof:
        def stepped():
            for batch in itertools.islice(Ahead(inner), 1 + batches):
                yield batch
                prof.step()
        pipeline.run(pipeline.Stages(stepped(), chosen.detector, chosen.redactor, Discard()), job.config,
                     Report(str(path), "discarded"))
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = Path(tempfile.mkdtemp(prefix="nightly-")) / "trace.json"
    prof.export_chrome_trace(str(raw))
    trace = out_dir / "profile-trace.json.gz"
    with raw.open("rb") as src, gzip.open(trace, "wb") as dst:
        shutil.copyfileobj(src, dst)
    key = "self_device_time_total" if cuda_on else "self_cpu_time_total"
    averages = prof.key_averages()
    try:
        table = averages.table(sort_by=key, row_limit=30)
    except Exception:  # PyTorch before 2.4 names the device column after CUDA
        key = "self_cuda_time_total"
        table = averages.table(sort_by=key, row_limit=30)
    (out_dir / "profile.txt").write_text(table)
    top = sorted((e for e in averages if not e.key.startswith("ProfilerStep")), key=lambda e: getattr(e, key, 0),
                 reverse=True)[:10]
    return {"trace": trace.name, "table": "profile.txt", "batches": batches,
            "top": [{"name": e.key[:80], "calls": e.count, "ms": round(getattr(e, key, 0) / 1000, 2)} for e in top]}


def targets(res: dict) -> dict:
    """Each speed target (TARGETS) beside what this run got; only meaningful for the 1080p workload."""
    got = dict(res)
    x264 = res.get("x264_alone", {}).get("fps") if isinstance(res.get("x264_alone"), dict) else None
    if x264 and res.get("e2e_fps"):
        got["e2e_over_x264"] = round(res["e2e_fps"] / x264, 2)
    if isinstance(res.get("at_once"), dict):
        got["at_once_fps"] = res["at_once"]["fps"]
    out = {}
    for name, (op, goal) in TARGETS.items():
        value = got.get(name)
        if isinstance(value, (int, float)):
            out[name] = {"goal": f"{op} {goal:g}", "got": value, "met": value >= goal if op == ">=" else value <= goal}
    return out


def part_throughput(args) -> dict:
    """The fixed workload: 1080p30 H.264 with real faces and audio, GPU backend: correctness first (end to end,
    every frame checked), then where the time goes. Each measure after the end-to-end run is skipped, with a
    note, once the part's share of the budget is spent."""
    from helpers import audio_packets, video_times

    import trt_anon
    from trt_anon.errors import first_line
    from trt_anon.plan import files_at_once

    clip = workload(args.cache, args.frames, args.size, make=args.clips is None)
    t_start = time.perf_counter()
    res: dict[str, Any] = {"size": "{}x{}".format(*args.size), "ddr_measure": "wall"}
    problems: list[str] = []
    ddr, job, chosen = ddr_run(clip.path, args.frames)
    res.update(ddr)
    out = Path(tempfile.mkdtemp(prefix="nightly-")) / "job.anon.mp4"
    with GpuMemoryPeak() as mem:
        report = trt_anon.process(clip.path, out, backend="auto", overwrite=True,
                                  json_path=out.with_suffix(".json"))
    res.update(e2e_figures(report))
    res["gpu_memory_peak_gib"] = round(mem.peak / 2**30, 2)
    problems += backend_problems(report.backends)
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
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(out.with_suffix(".json"), args.out / "throughput-boxes.json")
    measures: list[tuple[str, Callable[[], Any]]] = [
        ("x264_alone", lambda: x264_alone(clip.path, job.config, args.x264_frames)),
        ("decoders_alone", lambda: decoders_alone(clip.path, job.config.batch_size)),
        ("at_once", lambda: ddr_at_once(clip.path, args.at_once or files_at_once(job.config, [clip.path] * 7))),
        ("detector_alone", lambda: detector_alone(clip.path, chosen)),
    ]
    if args.profile:
        measures.append(("profile", lambda: profile_run(clip.path, job, chosen, args.out)))
    skipped = []
    for name, measure in measures:
        if args.timeout is not None and time.perf_counter() - t_start > args.timeout:
            skipped.append(name)
            continue
        try:
            res[name] = measure()
        except Exception as exc:  # a measure that cannot run here is a note, not a failed part
            res[name] = f"not run: {type(exc).__name__}: {first_line(exc)}"
    if skipped:
        res["skipped"] = f"out of this part's {args.timeout:.0f} s: " + ", ".join(skipped)
    res["targets"] = targets(res) if res["size"] == "1920x1080" else {}
    x264 = res.get("x264_alone", {}).get("fps") if isinstance(res.get("x264_alone"), dict) else None
    decoders = res.get("decoders_alone") if isinstance(res.get("decoders_alone"), dict) else {}
    alone = ", ".join(f"{k} {v:.0f}" for k, v in decoders.items() if isinstance(v, float))
    ms = res.get("gpu_ms_per_looked_frame")
    res.update(passed=not problems, problems=problems,
               headline=(f"decode+detect+redact {res['ddr_fps']:.0f} fps (wall, encoder discarding), end to end "
                         f"{res['e2e_fps']:.0f} fps ({args.frames} frames {args.size[1]}p H.264; detector "
                         f"{detector_words(report.backends)}; {'/'.join(report.backends.values())}); looked at "
                         f"{res['look_share']:.0%} of frames in {res['calls']} calls of "
                         f"{'/'.join(res['call_sizes'])}" + (f", {ms:.2f} GPU ms per looked frame" if ms else "")
                         + (f"; decoders alone: {alone} fps" if alone else "")
                         + (f"; x264 alone {x264:.0f} fps" if x264 else "")
                         + f"; GPU memory peak {res['gpu_memory_peak_gib']} GiB; set-up "
                         f"{report.seconds.get('setup', 0):.1f} s"))
    return res


def faces_mosaicked(clip, out: Path, max_dev: float = 4.0, max_bg: float = 4.0, chunk: int = 64) -> bool | str:
    """tests/helpers.frame_problem on every frame, streamed (2000 1080p frames do not fit in a list twice) and
    checked ``chunk`` frames at a time on every core: every ground-truth face in view mosaicked (the part of it
    in view: a face mostly behind another is not one to find), the background the input's within codec noise."""
    from concurrent.futures import ThreadPoolExecutor

    import av
    from helpers import frame_problem

    def check(item):
        i, fa, fb = item
        return frame_problem(clip, i, fa, fb, max_dev=max_dev, max_bg=max_bg)

    with av.open(str(clip.path)) as a, av.open(str(out)) as b, ThreadPoolExecutor(os.cpu_count()) as pool:
        for s in (a.streams.video[0], b.streams.video[0]):
            s.thread_type = "AUTO"
        pairs = ((i, fa.to_ndarray(format="rgb24"), fb.to_ndarray(format="rgb24"))
                 for i, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0))))
        while block := list(itertools.islice(pairs, chunk)):
            for problem in pool.map(check, block):  # numpy lets go of the GIL in the frame-sized arithmetic
                if problem is not None:
                    return problem
    return True


def workload(cache: Path, frames: int, size: tuple[int, int] = (1920, 1080), make: bool = True):
    """The clip (made once per machine and size, kept in ``cache`` with its ground truth beside it): three faces,
    one entering late; positions and sizes scale with the frame (1920x1080 is the measured workload). ``make=False``
    (a GPU machine, given clips made elsewhere): a missing clip is an error, never made there (it took 200 s on an
    H200 machine's CPUs once). x264 at crf 23 with a keyframe every 10 s keeps the 2000-frame clip under 10 MiB."""
    from synth import Clip, Face, make_clip

    w, h = size
    k = w / 1920
    faces = [
        Face(160 * k, (100 * k, 200 * k), (3.0 * 600 / frames * k, 0.5 * 600 / frames * k)),
        Face(90 * k, (1500 * k, 300 * k), (-2.0 * 600 / frames * k, 0.2 * 600 / frames * k), flip=True),
        Face(48 * k, (900 * k, 100 * k), (0.5 * 600 / frames * k, 0.5 * 600 / frames * k), enter=frames // 6)]
    path = cache / f"job-{w}x{h}-{frames}.mp4"
    truth = path.with_suffix(".truth.json")
    if path.exists() and truth.exists():
        boxes = [[tuple(b) for b in frame] for frame in json.loads(truth.read_text())]
        return Clip(path, boxes=boxes, faces=faces, size=size)
    if not make:
        raise FileNotFoundError(f"{path} (or its {truth.name}) is missing: make it on any machine, "
                                f"python scripts/nightly_gpu.py --make-clips {cache} --frames {frames} --size {w}x{h}, "
                                "and copy it to this one")
    cache.mkdir(parents=True, exist_ok=True)
    clip = make_clip(path, w, h, frames=frames, crf=23, keyint=300, faces=faces)
    truth.write_text(json.dumps(clip.boxes))
    return clip


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


def hits(found) -> list:
    """The boxes a detector found surely (kind hit: weak candidates only continue a track), per frame."""
    from trt_anon.detect.detections import HIT

    return [d.xyxy[d.kind == HIT] for d in found]


def colour_agreement(path: Path, frames: list, batch: int) -> dict:
    """The GPU decoder's RGB against PyAV's on the same frames: the decoders' colour conversions checked on their
    own (the H.264 decoding itself is exact on both), mean and largest difference in levels."""
    import cupy as cp
    import numpy as np

    from trt_anon.decode import select_gpu_decoder
    from trt_anon.errors import first_line

    try:
        decoder = select_gpu_decoder(path, batch, *stream_params(path, batch))
    except Exception as exc:
        return {"skipped": f"no GPU decoder: {first_line(exc)}"}
    diffs, seen = [], 0
    for b in decoder:
        got = cp.asnumpy(b.frames[:len(frames) - seen]).astype(np.int16)
        diffs.append(np.abs(got - np.stack(frames[seen:seen + len(got)])))
        seen += len(got)
        if seen >= len(frames):
            break
    d = np.concatenate(diffs)
    return {"decoder": decoder.name, "frames": seen, "mean": round(float(d.mean()), 3), "max": int(d.max())}


def part_agreement(args) -> dict:
    """The CPU's FP32 model and the GPU detector on the same decoded pixels (the clip's first frames, decoded by
    PyAV, uploaded as they are): boxes agree (IoU >= 0.9, one to one, every frame looked at), and the GPU mosaic
    equals the NumPy reference on the CPU's boxes. The GPU decoder's colour conversion is compared with PyAV's
    apart (it moved box edges by 3-5 px when the detectors saw each its own decoder's frames). One detection size
    for both (full width): "auto" differs by backend (2/3 on the CPU), which would measure scale, not the GPU."""
    import cupy as cp
    import numpy as np

    from trt_anon import Config
    from trt_anon.detect import select_detector

    clip = workload(args.cache, args.frames, args.size, make=args.clips is None)
    frames = first_frames(clip.path, args.agreement_frames)
    size = args.size[0] // 32 * 32
    cpu = select_detector(Config(backend="cpu", cpu_precision="fp32", det_size=size), gpu=False)
    gpu = select_detector(Config(backend="gpu", det_size=size), gpu=True, frame_hw=frames[0].shape[:2])
    cpu_hits, gpu_hits = [], []
    for s in range(0, len(frames), 32):
        chunk = np.stack(frames[s:s + 32])
        cpu_hits += hits(cpu(chunk))
        gpu_hits += hits(gpu(cp.asarray(chunk)))
    res = box_agreement(cpu_hits, gpu_hits)
    mosaic_equal = mosaic_matches(frames[:64], cpu_hits[:64])
    colour = colour_agreement(clip.path, frames, 32)
    problems = list(res["problems"]) + ([] if mosaic_equal else ["GPU mosaic differs from the NumPy reference"])
    if gpu.name not in ("tensorrt-fp16", "torch-cuda-fp16"):
        problems.append(f"detector {gpu.name!r} is not a GPU detector")
    if "mean" in colour and colour["mean"] >= COLOUR_MEAN_MAX:
        problems.append(f"{colour['decoder']}'s RGB differs from PyAV's by {colour['mean']} levels on average")
    res.update(mosaic_equal=mosaic_equal, colour=colour, passed=not problems, problems=problems, det_size=size,
               detectors={"cpu": cpu.name, "gpu": gpu.name},
               headline=(f"{res['frames'] - res['frames_disagreeing']}/{res['frames']} frames agree "
                         f"({res['boxes']} CPU boxes, min IoU {res['min_iou']}; {gpu.name} vs {cpu.name} at {size} px "
                         f"on the same pixels); mosaic {'equal' if mosaic_equal else 'DIFFERENT'}; "
                         + (f"{colour['decoder']} vs PyAV colours: mean {colour['mean']}, max {colour['max']} levels"
                            if "mean" in colour else f"colours not compared ({colour.get('skipped')})")))
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
    earlier = sorted(p for p in out.glob(f"{slug(gpu)}-*.json") if p.name != today.name)
    if not earlier or "throughput" not in data["parts"]:
        return []
    base = json.loads(earlier[-1].read_text())["parts"].get("throughput", {})
    if base.get("size", "1920x1080") != data["parts"]["throughput"].get("size", "1920x1080"):
        return []  # another workload: not comparable
    drops = []
    for k in ("ddr_fps", "e2e_fps"):
        if k == "ddr_fps" and base.get("ddr_measure") != data["parts"]["throughput"].get("ddr_measure"):
            continue  # the sum of the stages' timers then, the wall clock now: not comparable
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
    ap.add_argument("--clips", type=Path, metavar="DIR", help="the clip as --make-clips made it (copied to "
                    "the GPU machine): used as is, never made here")
    ap.add_argument("--make-clips", type=Path, metavar="DIR", help="make the throughput clip (and its ground "
                    "truth) in DIR for --frames and --size, and stop; needs no GPU")
    ap.add_argument("--profile", action="store_true", help="throughput: a torch.profiler trace of 3 batches in --out")
    ap.add_argument("--x264-frames", type=int, default=600, help="frames libx264 encodes alone (held decoded)")
    ap.add_argument("--at-once", type=int, default=0, metavar="N", help="throughput: copies of the clip run at "
                    "once on the GPU (default: as many as trt-anon would run, at most 7)")
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="where earlier summaries are (default: --out; where "
                    "--out holds none: bench-results/gpu)")
    args = ap.parse_args(argv)
    if args.make_clips is not None:
        clip = workload(args.make_clips, args.frames, args.size)
        truth = clip.path.with_suffix(".truth.json")
        print(f"{clip.path} ({clip.path.stat().st_size / 2**20:.1f} MiB) and {truth.name}: copy {args.make_clips} "
              "to the GPU machine")
        return 0
    if args.clips is not None:
        args.cache = args.clips

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
        share = SHARE[part] / sum(SHARE[q] for q in args.parts[k:])
        args.timeout = None if left is None else left * share
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
    drops = compare_with_baseline(args.baseline or args.out, machine["gpu"], path, data)
    if drops:
        print("nightly: FAIL: slower than the baseline: " + "; ".join(drops), file=sys.stderr)
    print(f"summary: {path} and {path.with_suffix('.md').name} ({time.monotonic() - start:.0f} s)")
    return 0 if ok and not drops else 1


if __name__ == "__main__":
    sys.exit(main())
