"""Live streams as real cameras send them: an MPEG-TS camera on loopback (H.264 and AAC with ADTS headers,
tests/live_camera.py) played through ``trt_anon.live`` in each way a camera misbehaves, every written frame
checked against the clip's known faces.

    python scripts/bench_live.py                                   # 720p30, 20 s, every scenario, --latency 0.5
    python scripts/bench_live.py --scenarios normal stall burst    # some of them
    python scripts/bench_live.py --size 1920x1080 --fps 60 --scenarios drop cover   # overload, both policies
    python scripts/bench_live.py --burners 2 --scenarios drop cover                 # overload from other work
    python scripts/bench_live.py --code ../old-checkout            # the same runs on another tree's trt_anon

Scenarios: ``normal`` (the camera at its pace), ``stall`` (nothing for 1 s at a third and at two thirds of the
clip, then what fell due at once, as FFmpeg's ``-re`` catches up), ``burst`` (the bytes at a constant rate: a
keyframe's frames arrive late and together), ``damaged`` (0.02% of the TS packets with a byte flipped), ``drop``
and ``cover`` (``--on-overload``; overload from the clip's size or ``--burners``), ``error`` (the detector raises
once, mid-stream). Per run: frames sent, written, of those real (not covered black), dropped, covered, dropped
among the first second's frames (start-up), delay p50/p99/max (arrival -> written), frames with a face in view
not covered (must be 0), frames of a damaged stream not trusted (repaired by the decoder, or drawn on one before a
keyframe: dropped or covered), errors FFmpeg reports reading the recording back (must be 0), peak RSS, and the load
average.
Written to bench-results/live-DATE.json too.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # synth (clips with real faces), live_camera, helpers: test code

SCENARIOS = {  # name -> (camera options, stream options)
    "normal": ([], {}),
    "stall": (None, {}),  # the stalls depend on the clip's length: set in main()
    "burst": (["--constant-rate"], {}),
    "damaged": (["--damage", "0.0002"], {}),
    "drop": ([], {"on_overload": "drop"}),
    "cover": ([], {"on_overload": "cover"}),
    "error": ([], {}),  # the detector's call that fails: set in main()
}

# The run, in its own process (its memory is its own, and --code picks the trt_anon it imports).
CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from trt_anon import Config, live
from trt_anon.detect import onnxrt
from trt_anon.errors import DetectorError
url, out, opts = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
fail_at = opts.pop("fail_at", None)
if fail_at:  # the detector fails once, mid-stream
    real, calls = onnxrt.OnnxRuntimeDetector.__call__, [0]
    def once(self, frames, *args, **kwargs):  # (the detector's own arguments, whatever the checkout's code)
        calls[0] += 1
        if calls[0] == fail_at:
            raise DetectorError("simulated failure")
        return real(self, frames, *args, **kwargs)
    onnxrt.OnnxRuntimeDetector.__call__ = once
rss = []
def sample():
    while True:
        rss.append(next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")))
        time.sleep(0.5)
threading.Thread(target=sample, daemon=True).start()
load = os.getloadavg()[0]
for _ in range(100):
    try:
        r = live.stream(url, out, Config(overwrite=True), progress=False, retries=0,
                        log=lambda line: print(line, file=sys.stderr), **opts)
        break
    except live.InputError as exc:
        if "cannot open" not in str(exc):
            raise
        time.sleep(0.1)
d = r.to_dict(); d["rss_peak"] = max(rss); d["load"] = [load, os.getloadavg()[0]]
print("BENCH " + json.dumps(d))
"""


def burn(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(clip, out: Path, fps: int) -> tuple[int, int, int, list[int]]:
    """The recording read back: (frames with a face in view not covered, frames covered whole, errors FFmpeg
    reported reading it, the clip's frame numbers written: from each frame's time, the source's own)."""
    import av
    import av.logging
    from helpers import frame_problem

    raw = black = 0
    numbers = []
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    with av.logging.Capture() as logs, av.open(str(clip.path)) as src, av.open(str(out)) as rec:
        inputs = enumerate(src.decode(video=0))
        for frame in rec.decode(video=0):
            numbers.append(n := round(frame.time * fps))
            i, before = next(inputs)
            while i < n:
                i, before = next(inputs)
            after = frame.to_ndarray(format="rgb24")
            if after.max() < 16:
                black += 1
            elif frame_problem(clip, i, before.to_ndarray(format="rgb24"), after, max_bg=255) is not None:
                raw += 1
    av.logging.set_level(level)
    return raw, black, sum(1 for line in logs if line[0] <= av.logging.ERROR), numbers


def run(name: str, clip, ts: Path, work: Path, code: Path, latency: float, camera: list[str], opts: dict,
        burners: int, fps: int) -> dict:
    p = port()
    cam = subprocess.Popen([sys.executable, str(ROOT / "tests" / "live_camera.py"), str(p), str(ts), *camera])
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=burn, args=(stop,), daemon=True) for _ in range(burners)]
    for h in hogs:
        h.start()
    out = work / f"{name}.mkv"
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, str(code), f"tcp://127.0.0.1:{p}", str(out),
                            json.dumps({"latency": latency, **opts})], capture_output=True, text=True)
    finally:
        stop.set()
        for h in hogs:
            h.join()
        cam.kill()
        cam.wait()
    res = next((json.loads(line[6:]) for line in r.stdout.splitlines() if line.startswith("BENCH ")), None)
    if res is None:
        return {"scenario": name, "error": (r.stderr.strip().splitlines() or ["no output"])[-1]}
    raw, black, errors, numbers = check(clip, out, fps)
    lv, sent = res["live"], len(clip.boxes)
    return {"scenario": name, "sent": sent, "written": res["frames"], "real": res["frames"] - black,
            "damaged": lv.get("damaged", 0),
            "dropped": lv["dropped"], "covered": lv["covered"], "detector_errors": lv.get("detector_errors", 0),
            "startup_dropped": len(set(range(fps)) - set(numbers)), "delay_p50": lv["delay_p50"],
            "delay_p99": lv["delay_p99"], "delay_max": lv["delay_max"], "raw_faces": raw, "probe_errors": errors,
            "rss_peak_mib": round(res["rss_peak"] / 2**20), "load": res["load"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    ap.add_argument("--size", default="1280x720", metavar="WxH")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--burners", type=int, default=0, help="busy processes beside each run (other work on the box)")
    ap.add_argument("--code", type=Path, default=ROOT, help="the checkout whose trt_anon runs (default: this one)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/trt_anon_bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / f"live-{time.strftime('%Y%m%d-%H%M%S')}.json")
    args = ap.parse_args()

    from live_camera import make_ts
    from synth import Face, make_clip

    width, height = map(int, args.size.split("x"))
    frames, s = args.fps * args.seconds, width / 1280
    args.cache.mkdir(parents=True, exist_ok=True)
    clip_path = args.cache / f"live_{width}x{height}_{args.fps}fps_{args.seconds}s.mp4"
    clip = make_clip(clip_path, width, height, frames=frames, fps=args.fps, crf=20, faces=[
        Face(110 * s, (80 * s, 120 * s), (2.0 * s * 30 / args.fps, 0.3 * s)),
        Face(70 * s, (1000 * s, 300 * s), (-1.5 * s * 30 / args.fps, 0.2 * s), enter=20, flip=True),
        Face(40 * s, (600 * s, 80 * s), (0.5 * s, 0.5 * s), enter=60),
        Face(26 * s, (300 * s, 500 * s), (0.6 * s, -0.2 * s))])  # small, and there from the first frame
    ts = clip_path.with_suffix(".ts")
    if not ts.exists():
        make_ts(clip_path, ts, keyint=2 * args.fps)
    scenarios = dict(SCENARIOS)
    scenarios["stall"] = (["--stall", f"{frames // 3}:1", "--stall", f"{2 * frames // 3}:1"], {})
    scenarios["error"] = ([], {"fail_at": max(3, frames // 6)})  # it looks at least every 4th frame: mid-stream
    work = args.cache / "live_runs"
    work.mkdir(exist_ok=True)
    print(f"{width}x{height} {args.fps} fps, {args.seconds} s, latency {args.latency} s, {args.burners} burner(s); "
          f"code: {args.code}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    head = ("scenario", "written/sent", "real", "dropped", "covered", "start drop", "p50", "p99", "max", "raw faces",
            "probe err", "RSS MiB", "load", "damaged")
    print(" | ".join(head))
    results = []
    for name in args.scenarios:
        camera, opts = scenarios[name]
        r = run(name, clip, ts, work, args.code, args.latency, camera, opts, args.burners, args.fps)
        results.append(r)
        if "error" in r:
            print(f"{name} | error: {r['error']}")
            continue
        print(" | ".join(str(v) for v in (
            name, f"{r['written']}/{r['sent']}", r["real"], r["dropped"], r["covered"], r["startup_dropped"],
            r["delay_p50"], r["delay_p99"], r["delay_max"], r["raw_faces"], r["probe_errors"], r["rss_peak_mib"],
            f"{r['load'][0]:.1f}-{r['load'][1]:.1f}", r["damaged"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": args.size, "fps": args.fps, "seconds": args.seconds,
                                    "latency": args.latency, "burners": args.burners, "code": str(args.code),
                                    "results": results}, indent=1))
    return 1 if any(r.get("raw_faces") or r.get("probe_errors") or "error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
