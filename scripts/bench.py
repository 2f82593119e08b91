"""Benchmark trt_anon against itself (every backend that runs here) and against deface.

    python scripts/bench.py --quick          # 720p, 150 frames: CPU in about two minutes
    python scripts/bench.py                  # 720p and 1080p, 600 frames each
    python scripts/bench.py --job            # the 5665-frame 1080p job (the 21 min 17 s to beat)
    python scripts/bench.py --memory         # peak RSS, 1-minute vs 10-minute clip (bounded memory)
    python scripts/bench.py --memory-4k      # peak RSS at 4K: frames held for back-fill vs decoded twice
    python scripts/bench.py --clip my.mp4    # your own clip
    python scripts/bench.py --rerender       # 720p: a first run with --json, then --decisions with that file
    python scripts/bench.py --live 60        # a 720p30 clip played live for 60 s: delay per frame, drops, RSS
    python scripts/bench.py --live 600 --live-size 640x360   # the 10-minute soak: RSS at start, end, peak

Prints one table (per-stage frames/s, end-to-end fps and wall time, peak host RSS and GPU
memory, backends, machine), the ratio to deface on the same clip (speed, and peak RSS: ours over deface's
own process; its ffmpeg reader/writer processes are shown beside it), and how far the two agree
on faces; writes it all to bench-results/<machine>-<time>.json. Each run is a fresh process,
so peak memory is that run's own. deface runs from its own virtual environment
(.bench-venv/deface, made on first use with `pip install deface onnx onnxruntime`; both of its
backends are timed), so that its OpenCV does
not replace ours; pass --deface PATH to use another, or --no-deface.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

# Runs in a fresh interpreter: process the clip, print the report, peak RSS and GPU memory.
CHILD = r"""
import json, resource, sys, trt_anon
opts = json.loads(sys.argv[3])
if "_hold_bytes" in opts:  # --memory-4k's "before": frames waiting for back-fill held, whatever their size
    import trt_anon.stages; trt_anon.stages.HOLD_BYTES = opts.pop("_hold_bytes")
r = trt_anon.process(sys.argv[1], sys.argv[2], overwrite=True, **opts)
gpu = 0
for mod in ("cupy", "torch"):
    try:
        if mod == "cupy":
            import cupy; gpu = max(gpu, cupy.get_default_memory_pool().total_bytes())
        else:
            import torch
            if torch.cuda.is_available(): gpu = max(gpu, torch.cuda.max_memory_allocated())
    except Exception:
        pass
# VmHWM is this process's own peak; ru_maxrss would include the parent's size at fork (Linux keeps it)
try:
    peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
d = r.to_dict(); d["peak_rss"] = peak; d["peak_gpu"] = gpu
print("BENCH " + json.dumps(d))
"""

# Runs inside deface's own environment: its CenterFace on every Nth frame, boxes as JSON.
DEFACE_BOXES = r"""
import json, sys, imageio.v2 as imageio
from deface.centerface import CenterFace
path, every, scale = sys.argv[1], int(sys.argv[2]), sys.argv[3]
reader = imageio.get_reader(path)
meta = reader.get_meta_data()
in_shape = tuple(map(int, scale.split("x"))) if scale != "none" else None
cf = CenterFace(in_shape=in_shape, backend="opencv")  # the backend of a plain `pip install deface`
out = {}
for i, frame in enumerate(reader):
    if i % every == 0:
        dets, _ = cf(frame, threshold=0.2)
        out[i] = [[float(v) for v in d[:4]] for d in dets]
print("BOXES " + json.dumps(out))
"""


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    if gpu is None:
        try:
            import cupy
            gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        except Exception:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version()}


def make_clip(path: Path, width: int, height: int, frames: int):
    from synth import Face
    from synth import make_clip as mk
    if path.exists():
        return
    s = width / 1280
    mk(path, width, height, frames=frames, crf=20, faces=[
        Face(110 * s, (80 * s, 120 * s), (2.0 * s, 0.3 * s)),
        Face(70 * s, (1000 * s, 300 * s), (-1.5 * s, 0.2 * s), enter=20, flip=True),
        Face(40 * s, (600 * s, 80 * s), (0.5 * s, 0.5 * s), enter=60),
    ])


# Live: the clip played at its own pace (as a camera) through trt_anon.live; resident memory sampled every second.
CHILD_LIVE = r"""
import json, os, sys, threading, time
from trt_anon import live
rss = []
def sample():
    while True:
        rss.append(next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")))
        time.sleep(1)
threading.Thread(target=sample, daemon=True).start()
config = live.Config(overwrite=True, **json.loads(sys.argv[3]))
load = os.getloadavg()[0]
r = live.stream(sys.argv[1], sys.argv[2], config, paced=True, progress=False)
d = r.to_dict(); d["rss"] = rss; d["load"] = [load, os.getloadavg()[0]]
print("BENCH " + json.dumps(d))
"""


def loop_clip(src: Path, dst: Path, times: int) -> None:
    """``src`` played ``times`` times in a row into ``dst``, its packets copied with their times moved on."""
    import av

    tmp = dst.with_suffix(".part.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        spans = [(float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base))
                 for p in inp.demux(list(inp.streams)) if p.size and p.pts is not None]
        length = max(e for _, e in spans) - min(b for b, _ in spans)  # every stream's packets, end to end
        for k in range(times):
            inp.seek(0)
            for p in inp.demux(list(inp.streams)):
                if p.size and p.stream.index in streams and p.dts is not None:
                    tb = p.time_base
                    shift = round(k * length / tb)
                    p.pts, p.dts = p.pts + shift, p.dts + shift
                    p.stream, p.time_base = streams[p.stream.index], tb
                    out.mux(p)
    tmp.rename(dst)


def live_run(cache: Path, work: Path, mach: dict, args, extra: dict) -> int:
    """A 30 fps clip (720p, or ``--live-size``) with a tone, played live for ``args.live`` seconds: the delay each
    frame had (arrival -> written), frames dropped or covered, audio packets copied, and resident memory: at the
    start (10% in: the model loaded, the queues full), at the end, and its peak. ``--live 600``: the 10-minute
    soak (memory flat: end within 10% of start)."""
    width, height = map(int, args.live_size.split("x"))
    clip = cache / f"live_{width}x{height}_{args.live}s.mp4"
    if args.live > 60 and not clip.exists():  # the 60 s clip over and over (packets copied): minutes, not an hour
        make_clip(cache / f"live_{width}x{height}_60s.mp4", width, height, 30 * 60)
        loop_clip(cache / f"live_{width}x{height}_60s.mp4", clip, -(-args.live // 60))
    make_clip(clip, width, height, 30 * args.live)
    r = subprocess.run([sys.executable, "-c", CHILD_LIVE, str(clip), str(work / "live.mkv"), json.dumps(extra)],
                       capture_output=True, text=True, cwd=ROOT)
    res = next((json.loads(line[6:]) for line in r.stdout.splitlines() if line.startswith("BENCH ")), None)
    if res is None:
        print((r.stderr.strip().splitlines() or ["no output"])[-1])
        return 1
    lv, rss = res["live"], res["rss"]
    start, end, peak = rss[len(rss) // 10], rss[-1], max(rss[len(rss) // 10:])
    print(f"live {width}x{height} 30 fps, {args.live} s{' ' + str(extra) if extra else ''}: {res['frames']} of "
          f"{30 * args.live} frames written, delay p50 {lv['delay_p50']} s, p99 {lv['delay_p99']} s, max "
          f"{lv['delay_max']} s (latency {lv['latency']} s, back-fill {lv['lookback']} frames); dropped "
          f"{lv['dropped']}, covered {lv['covered']}; {lv['audio_packets']} audio packets; RSS start (10% in) "
          f"{start / 2**20:.0f} MiB, end {end / 2**20:.0f} MiB ({end / start - 1:+.1%}), peak {peak / 2**20:.0f} MiB; "
          f"load average {res['load'][0]:.1f} at the start, {res['load'][1]:.1f} at the end")
    save(args.out, mach, [{"run": f"live {width}x{height} 30fps {args.live}s", "options": extra,
                           **{k: res[k] for k in ("frames", "live", "load")},
                           "rss_start": start, "rss_end": end, "rss_peak": peak}])
    return 0


def rerender(cache: Path, work: Path, mach: dict, args) -> int:
    """720p, 150 frames: the first run (detecting, writing --json) against the run again from that file
    (--decisions: nothing detected), each end to end in a fresh process."""
    clip = cache / "faces_1280x720_150.mp4"
    make_clip(clip, 1280, 720, 150)
    first = run_ours(clip, work / "first.mp4", {"json_path": str(work / "first.json")})
    again = run_ours(clip, work / "again.mp4", {"decisions_path": str(work / "first.json")})
    for res in (first, again):
        if "error" in res:
            print(res["error"])
            return 1
    ratio = first["process_wall"] / again["process_wall"]
    print(f"720p, 150 frames: first run {first['fps']:.1f} fps ({first['process_wall']:.1f} s with start-up), "
          f"--decisions {again['fps']:.1f} fps ({again['process_wall']:.1f} s): {ratio:.1f}x faster")
    save(args.out, mach, [{"run": "rerender 720p", "first": first, "again": again, "ratio": ratio}])
    return 0


def run_ours(clip: Path, out: Path, opts: dict) -> dict:
    """One run in a fresh interpreter; ``process_wall`` counts start-up as deface's wall does."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, str(clip), str(out), json.dumps(opts)], capture_output=True,
                       text=True, cwd=ROOT)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH "):
            res = json.loads(line[6:])
            res["process_wall"] = time.perf_counter() - t0
            return res
    err = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": err}


def deface_python(arg: str | None) -> Path | None:
    """deface's interpreter: --deface, else .bench-venv/deface (made once with pip)."""
    if arg:
        p = Path(arg)
        return p if p.name.startswith("python") else p.parent / "python"
    venv = ROOT / ".bench-venv" / "deface"
    py = venv / "bin" / "python"
    if not py.exists():
        print("making .bench-venv/deface (pip install deface) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "deface", "onnx", "onnxruntime"], check=True)
    return py


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants now (deface's imageio runs ffmpeg children)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS"))
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def run_deface(py: Path, clip: Path, out: Path, args: list[str]) -> dict:
    """deface in a fresh interpreter: wall time, its own peak RSS (exact, from the kernel, as ours is measured)
    and the peak of its process tree with the ffmpeg processes it reads and writes through (sampled)."""
    cmd = [str(py), "-c", "import sys; from deface.deface import main; sys.exit(main())", str(clip), "-o", str(out),
           *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        tree = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaped here: its own rusage, not all children's
            if pid:
                break
            tree = max(tree, _tree_rss(proc.pid))
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0 or not out.exists():
        return {"error": (stderr.strip().splitlines() or ["failed"])[-1]}
    return {"wall": wall, "peak_rss": usage.ru_maxrss * 1024, "peak_rss_tree": max(tree, usage.ru_maxrss * 1024)}


def deface_boxes(py: Path, clip: Path, every: int, scale: str | None) -> dict[int, list]:
    r = subprocess.run([str(py), "-c", DEFACE_BOXES, str(clip), str(every), scale or "none"], capture_output=True,
                       text=True)
    for line in r.stdout.splitlines():
        if line.startswith("BOXES "):
            return {int(k): v for k, v in json.loads(line[6:]).items()}
    return {}


def agreement(ours: dict[int, list], theirs: dict[int, list]) -> tuple[float, float]:
    """Fraction of our boxes deface also finds (IoU >= 0.3), and of deface's boxes we find."""
    import numpy as np

    from trt_anon.detect.detections import iou

    def found(a, b):
        hit = total = 0
        for f, boxes in a.items():
            if not boxes:
                continue
            total += len(boxes)
            other = b.get(f, [])
            if other:
                hit += int((iou(np.array(boxes), np.array(other)).max(axis=1) >= 0.3).sum())
        return hit / total if total else 1.0

    return found(ours, theirs), found(theirs, ours)


def our_boxes(json_path: Path, every: int) -> dict[int, list]:
    """The faces we redact on every ``every``-th frame: detected there or, on the frames the detector did not
    look at (``--detect-every``), held and filled from the looks around (counting hits alone would count those
    frames as faces missed)."""
    data = json.loads(json_path.read_text())
    return {f["frame"]: [x["box"] for x in f["faces"]] for f in data["frames"] if f["frame"] % every == 0}


def combos() -> list[tuple[str, dict]]:
    """Every backend combination that can run here."""
    from trt_anon import cuda

    out = [("cpu", {"backend": "cpu"}), ("cpu fp32", {"backend": "cpu", "cpu_precision": "fp32"})]
    if cuda.available():
        out.insert(0, ("gpu", {"backend": "gpu"}))
    return out


def fmt_row(cols, widths):
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one 720p clip of 150 frames")
    ap.add_argument("--job", action="store_true", help="the 5665-frame 1080p job")
    ap.add_argument("--memory", action="store_true", help="peak RSS for a 1-minute and a 10-minute clip")
    ap.add_argument("--memory-4k", action="store_true",
                    help="peak RSS at 4K (60 frames): today's defaults vs batches of 8 with every waiting frame held")
    ap.add_argument("--rerender", action="store_true", help="--decisions against the first run, 720p")
    ap.add_argument("--live", type=int, metavar="SECONDS",
                    help="a 720p30 clip played live for this long: delay per frame, drops, memory over time "
                    "(--set applies Config options, e.g. --set detect_every=2)")
    ap.add_argument("--live-size", default="1280x720", metavar="WxH", help="the --live clip's size")
    ap.add_argument("--clip", action="append", help="benchmark this clip (repeatable)")
    ap.add_argument("--frames", type=int, default=600, help="frames per generated clip (default 600)")
    ap.add_argument("--deface", help="path to deface's python or executable")
    ap.add_argument("--no-deface", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                    help="a process() option for our runs, e.g. --set det_size=640 (repeatable)")
    ap.add_argument("--agreement-every", type=int, default=5, help="compare faces on every Nth frame")
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="folder for the JSON results")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "trt_anon_bench"),
                    help="where generated clips are kept between runs")
    args = ap.parse_args()

    from tqdm import tqdm

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    mach = machine()
    print(f"machine: {mach['cpu']} x{mach['cores']} cores, GPU: {mach['gpu'] or 'none'}", flush=True)

    if args.memory:
        return memory_check(cache, work, mach, args)
    if args.memory_4k:
        return memory_4k(cache, work, mach, args)
    if args.rerender:
        return rerender(cache, work, mach, args)
    extra = {}
    for item in args.set:
        k, _, v = item.partition("=")
        extra[k.strip()] = int(v) if v.strip().isdigit() else v.strip()
    if args.live:
        return live_run(cache, work, mach, args, extra)

    clips: list[Path] = [Path(c) for c in args.clip or []]
    if not clips:
        sizes = [(1280, 720, 150)] if args.quick else [(1920, 1080, 5665)] if args.job else \
                [(1280, 720, args.frames), (1920, 1080, args.frames)]
        for w, h, n in tqdm(sizes, desc="making clips", leave=False):
            p = cache / f"faces_{w}x{h}_{n}.mp4"
            make_clip(p, w, h, n)
            clips.append(p)

    py = None if args.no_deface else deface_python(args.deface)
    rows, results = [], []
    jobs = [(c, name, opts) for c in clips for name, opts in combos()]
    bar = tqdm(total=len(jobs) + (3 * len(clips) if py else 0), desc="benchmark", leave=False)
    for clip in clips:
        ours_fps = ours_rss = json_path = None  # of the first run that works: the default one on this machine
        for c, name, opts in [j for j in jobs if j[0] == clip]:
            run_json = work / f"{clip.stem}.{name.replace(' ', '_')}.json"
            res = run_ours(clip, work / f"{clip.stem}.{name}.mp4", {**opts, **extra, "json_path": str(run_json)})
            res.update(clip=clip.name, run=f"trt_anon {name}", options=extra)
            results.append(res)
            bar.update(1)
            if "error" in res:
                rows.append([clip.name, f"trt_anon {name}", "error: " + res["error"][:60]])
                continue
            n, s = res["frames"], res["seconds"]
            per = {k: (n / s[k] if s.get(k) else 0.0) for k in ("decode", "detect", "redact", "encode")}
            res["stage_fps"] = per
            if ours_fps is None:
                ours_fps, json_path = res["frames"] / res["process_wall"], run_json  # start-up included, like deface
                ours_rss = res["peak_rss"]
            b = res["backends"]
            rows.append([clip.name, f"trt_anon {name}", *(f"{per[k]:.0f}" for k in per), f"{res['fps']:.1f}",
                         f"{res['wall']:.1f}", f"{res['peak_rss'] / 2**20:.0f}", f"{res['peak_gpu'] / 2**20:.0f}",
                         "/".join(b[k] for k in ("decode", "detect", "redact", "encode"))])
        if py:
            from trt_anon.media import open_input
            with open_input(clip) as cont:
                s = cont.streams.video[0]
                w, h, nframes = s.codec_context.width, s.codec_context.height, s.frames
            comparable = f"{640}x{round(640 * h / w)}"
            # deface's own default picks ONNX Runtime when onnx and onnxruntime are installed (its README's
            # optional speed-up), else OpenCV's DNN (a plain `pip install deface`): both are run, the faster is the peer
            for label, extra_args in (("deface default (opencv)", ["--backend", "opencv"]),
                                      ("deface default (onnxrt)", ["--backend", "onnxrt"]),
                                      (f"deface --scale {comparable}", ["--backend", "opencv", "--scale", comparable])):
                res = run_deface(py, clip, work / f"{clip.stem}.deface.mp4", extra_args)
                res.update(clip=clip.name, run=label, frames=nframes)
                bar.update(1)
                if "error" in res:
                    rows.append([clip.name, label, "error: " + res["error"][:60]])
                    results.append(res)
                    continue
                res["fps"] = nframes / res["wall"]
                if ours_fps:
                    res["ratio"] = ours_fps / res["fps"]
                    res["rss_ratio"] = ours_rss / res["peak_rss"]  # peak memory per worker, ours over deface's
                if label == "deface default (opencv)" and json_path is not None:
                    theirs = deface_boxes(py, clip, args.agreement_every, None)
                    if theirs:
                        a, b = agreement(our_boxes(json_path, args.agreement_every), theirs)
                        res["agreement"] = {"ours_found_by_deface": a, "deface_found_by_ours": b}
                results.append(res)
                rows.append([clip.name, label, "", "", "", "", f"{res['fps']:.1f}", f"{res['wall']:.1f}",
                             f"{res['peak_rss'] / 2**20:.0f}", "",
                             f"trt_anon/deface = {res.get('ratio', 0):.1f}x fps (start-up incl.), "
                             f"{res.get('rss_ratio', 0):.2f}x peak RSS (deface + its ffmpeg processes: "
                             f"{res['peak_rss_tree'] / 2**20:.0f} MB)"])
    bar.close()

    head = ["clip", "run", "decode", "detect", "redact", "encode", "fps", "wall s", "RSS MB", "GPU MB", "backends"]
    widths = [max(len(str(r[i])) if i < len(r) else 0 for r in rows + [head]) for i in range(len(head))]
    print(fmt_row(head, widths))
    for r in rows:
        print(fmt_row(r + [""] * (len(head) - len(r)), widths))
    for r in results:
        if "agreement" in r:
            a = r["agreement"]
            print(f"{r['clip']}: {a['ours_found_by_deface']:.0%} of our faces found by deface, "
                  f"{a['deface_found_by_ours']:.0%} of deface's faces found by trt_anon")
        if r.get("seconds", {}).get("consent") is not None:  # --set keep_faces=PHOTO: what matching cost
            print(f"{r['clip']}, {r['run']}: --keep-face took {r['seconds']['consent']:.2f} s of {r['wall']:.1f} s "
                  f"({r['seconds']['consent'] / r['wall']:.0%}); kept {len(r.get('kept', []))} track(s)")
    save(args.out, mach, results)
    return 0


def memory_check(cache: Path, work: Path, mach: dict, args) -> int:
    """Peak RSS of a 1-minute and a 10-minute clip (small frames, so it runs on a laptop)."""
    peaks = {}
    for minutes in (1, 10):
        p = cache / f"memory_{minutes}min.mp4"
        make_clip(p, 320, 180, 30 * 60 * minutes)
        res = run_ours(p, work / "mem.mp4", {"backend": "auto"})
        peaks[minutes] = res.get("peak_rss", 0)
        print(f"{minutes:>2} min: {res.get('frames')} frames, peak RSS {peaks[minutes] / 2**20:.0f} MB, "
              f"{res.get('fps', 0):.0f} fps")
    growth = peaks[10] / peaks[1] - 1 if peaks[1] else float("nan")
    print(f"10-minute vs 1-minute peak RSS: {growth:+.1%} ({'bounded' if growth < 0.10 else 'NOT bounded'})")
    save(args.out, mach, [{"run": "memory", "peak_rss": peaks, "growth": growth}])
    return 0 if growth < 0.10 else 1


def memory_4k(cache: Path, work: Path, mach: dict, args) -> int:
    """Peak RSS at 4K on the CPU path: the defaults (batches of 2, the frames waiting for back-fill decoded a
    second time) against every waiting frame held, in batches of 8 (as before 4K had smaller batches) and of 2.
    Held or decoded again, the same batches must write the same frames (``--detect-every auto`` plans its looks
    per batch, so batches of 8 look at other frames: their output may differ by the boxes of those looks)."""
    import hashlib

    import av

    clip = cache / "memory_4k.mp4"
    make_clip(clip, 3840, 2160, 60)
    runs, digests = [], {}
    for name, opts in (("held, batches of 8", {"batch_size": 8, "_hold_bytes": 2**62}),
                       ("held, batches of 2", {"batch_size": 2, "_hold_bytes": 2**62}), ("defaults", {})):
        out = work / f"4k-{len(runs)}.mp4"
        res = run_ours(clip, out, {"backend": "cpu", **opts})
        if "error" in res:
            print(f"{name}: {res['error']}")
            return 1
        h = hashlib.sha256()
        with av.open(str(out)) as c:
            for frame in c.decode(video=0):
                h.update(frame.to_ndarray().tobytes())
        digests[name] = h.hexdigest()
        runs.append({"run": f"4k {name}", "peak_rss": res["peak_rss"], "fps": res["fps"], "frames": res["frames"]})
        print(f"4K, {name}: {res['frames']} frames, peak RSS {res['peak_rss'] / 2**20:.0f} MiB, {res['fps']:.2f} fps")
    same = digests["held, batches of 2"] == digests["defaults"]
    print(f"same frames written, held or decoded twice: {'yes' if same else 'NO'} (batches of 8: "
          f"{'the same' if digests['held, batches of 8'] == digests['defaults'] else 'other looks, other frames'})")
    save(args.out, mach, runs + [{"run": "4k same output", "same": same}])
    return 0 if same else 1


def save(folder: str, mach: dict, results: list) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", (mach["gpu"] or mach["cpu"]))[:40].strip("-")
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": mach, "results": results}, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    sys.exit(main())
