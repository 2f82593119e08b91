"""Fuzz campaign: damaged copies of small real-face clips through the real CLI, every outcome checked.

    python scripts/fuzz.py                          # the long campaign (docs/robustness.md): 600 cases, --seed 2
    python scripts/fuzz.py --cases 50 --seed 15     # a short one (what tests/test_fuzz.py runs)
    python scripts/fuzz.py --only mp4 --mutator mp4_box --keep /tmp/f   # one kind, keep the failures

Seeds are tiny clips with a moving real face (scikit-image's astronaut) and per-frame ground truth,
one per container/codec: MP4 H.264+AAC, MKV HEVC+AAC, WebM VP9+Opus, AVI MPEG-4+MP3, and an old
DivX-style AVI (MPEG-4 with packed B-frames + AC3). Each case is one seeded mutation of one seed:
bytes flipped, blocks zeroed, chunks duplicated or removed, cuts, headers scrambled, and damage
that knows the container (MP4 box sizes/types and sample tables, Matroska EBML element IDs and
sizes, AVI RIFF chunks and headers). Case k is the same bytes on every machine (``--seed``).

Each case runs ``python -m trt_anon CASE -o OUT/ -q`` in a subprocess with a time limit, and is
  ok        exit 0, exactly one file in OUT, it decodes, its timestamps increase, and every face of
            the seed is covered at the output frame's time (a region closer to the face than to its
            mosaic is a leak);
  refused   exit 1 with one line ``trt-anon: error: ...`` and nothing at all left in OUT;
  failure   anything else: a traceback, ``internal error``, a hang (time limit), a signal, a leak,
            an undecodable output, a file left behind, or the input modified.
Exit status: 0 when there is no failure.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tests/synth.py: clips with real faces (test code, not in the wheel)

from synth import Face, make_clip, make_old_avi  # noqa: E402

W, H, FRAMES, FPS = 160, 96, 16, 15
CELL = 25
FACES = [Face(48, (20, 18), (2.5, 0.5))]


# ---- seeds ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Seed:
    """A clean clip and what the checker needs of it: per frame, its time, face boxes and pixels."""

    name: str
    path: Path
    times: list[float]
    boxes: list[list[tuple]]
    frames: list[np.ndarray]


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def video_times_of(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def make_seeds(folder: Path, only: list[str] | None = None) -> list[Seed]:
    """One small clip per container/codec (about 1 s, 160x96, one face 48 px wide moving right)."""
    kinds: dict[str, Callable[[Path], object]] = {
        "mp4": lambda p: make_clip(p / "seed.mp4", W, H, FRAMES, FPS, FACES),                 # H.264 + AAC
        "mkv": lambda p: make_clip(p / "seed.mkv", W, H, FRAMES, FPS, FACES, codec="libx265"),  # HEVC + AAC
        "webm": lambda p: make_clip(p / "seed.webm", W, H, FRAMES, FPS, FACES),               # VP9 + Opus
        "avi": lambda p: make_clip(p / "seed.avi", W, H, FRAMES, FPS, FACES),                 # MPEG-4 + MP3
        "divx": lambda p: make_old_avi(p / "seed_divx.avi", W, H, FRAMES, FPS, FACES),        # packed B + AC3
    }
    seeds = []
    for name, make in kinds.items():
        if only and name not in only:
            continue
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        clip = make(d)
        frames = frames_of(clip.path)
        assert len(frames) == len(clip.boxes), (name, len(frames), len(clip.boxes))
        # decoders give frames in presentation order; their times are the sorted ones (an AVI's
        # packed B-frames come with their decode slots' times, out of order)
        seeds.append(Seed(name, clip.path, sorted(video_times_of(clip.path)), clip.boxes, frames))
    return seeds


# ---- mutators: (data, rng) -> damaged data ------------------------------------------------------

def flip_bytes(d: bytes, r: random.Random) -> bytes:
    b = bytearray(d)
    for _ in range(r.randint(1, 64)):
        b[r.randrange(len(b))] ^= 1 << r.randrange(8)
    return bytes(b)


def zero_block(d: bytes, r: random.Random) -> bytes:
    n = r.choice([16, 256, 1024, 4096])
    at = r.randrange(len(d))
    return d[:at] + bytes(min(n, len(d) - at)) + d[at + n:]


def duplicate_chunk(d: bytes, r: random.Random) -> bytes:
    n = r.choice([64, 512, 4096])
    src, dst = r.randrange(len(d)), r.randrange(len(d))
    return d[:dst] + d[src:src + n] + d[dst:]


def remove_chunk(d: bytes, r: random.Random) -> bytes:
    n = r.choice([1, 64, 512, 4096])
    at = r.randrange(len(d))
    return d[:at] + d[at + n:]


def cut(d: bytes, r: random.Random) -> bytes:
    return d[:r.randrange(1, len(d))]


def scramble_header(d: bytes, r: random.Random) -> bytes:
    b = bytearray(d)
    end = min(len(b), 1024)
    for _ in range(r.randint(1, 16)):
        b[r.randrange(end)] = r.randrange(256)
    return bytes(b)


def random_block(d: bytes, r: random.Random) -> bytes:
    n = r.choice([8, 128, 2048])
    at = r.randrange(len(d))
    return d[:at] + r.randbytes(min(n, len(d) - at)) + d[at + n:]


# MP4 / QuickTime boxes: 32-bit big-endian size, 4-char type; these contain other boxes.
MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"udta", b"dinf", b"mvex", b"moof",
                  b"traf"}
MP4_TABLES = {b"stsz", b"stco", b"co64", b"stts", b"stsc", b"stss", b"ctts", b"elst", b"mdhd", b"tkhd", b"mvhd",
              b"hdlr", b"stsd", b"sgpd", b"sbgp", b"sdtp"}


def mp4_boxes(d: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[tuple[int, int, bytes]]:
    """(offset, size, type) of every box, depth first."""
    end = len(d) if end is None else end
    out, at = [], start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", d[at:at + 8])
        if size == 1 and at + 16 <= end:
            size = struct.unpack(">Q", d[at + 8:at + 16])[0]
        elif size == 0:
            size = end - at
        if size < 8 or at + size > end:
            break
        out.append((at, size, kind))
        if kind in MP4_CONTAINERS and depth < 8:
            out.extend(mp4_boxes(d, at + 8, at + size, depth + 1))
        at += size
    return out


def mp4_box(d: bytes, r: random.Random) -> bytes:
    """Corrupt one box's size or type, or one 32-bit field of a sample table / header box."""
    boxes = mp4_boxes(d)
    if not boxes:
        return flip_bytes(d, r)
    tables = [b for b in boxes if b[2] in MP4_TABLES]
    b = bytearray(d)
    how = r.choice(["size", "type", "field", "field", "field"])
    if how == "field" and tables:
        at, size, kind = r.choice(tables)
        if size >= 16:
            f = at + 8 + 4 * r.randrange((size - 8) // 4)
            b[f:f + 4] = struct.pack(">I", r.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, r.randrange(1 << 32),
                                                     struct.unpack(">I", d[f:f + 4])[0] + r.choice([-1, 1])]
                                                    ) & 0xFFFFFFFF)
            return bytes(b)
    at, size, kind = r.choice([x for x in boxes if x[2] in MP4_CONTAINERS | MP4_TABLES] or boxes)
    if how == "type":
        b[at + 4:at + 8] = r.choice([b"free", b"moov", b"mdat", b"trak", b"\0\0\0\0", r.randbytes(4)])
    else:
        b[at:at + 4] = struct.pack(">I", r.choice([0, 1, 7, size - 1, size + 1, size * 2, 0xFFFFFFFF,
                                                   r.randrange(1 << 32)]) & 0xFFFFFFFF)
    return bytes(b)


# Matroska / WebM: EBML elements, variable-length IDs and sizes.
MKV_MASTERS = {0x18538067, 0x114D9B74, 0x1549A966, 0x1654AE6B, 0xAE, 0xE0, 0xE1, 0x1F43B675, 0xA0, 0x1C53BB6B,
               0xBB, 0xB7, 0x1254C367, 0x7373, 0x1A45DFA3, 0x4DBB, 0x6D80, 0x6240, 0x5034}


def _vint(d: bytes, at: int, keep_marker: bool) -> tuple[int, int] | None:
    if at >= len(d) or d[at] == 0:
        return None
    n = 8 - d[at].bit_length() + 1
    if at + n > len(d):
        return None
    v = int.from_bytes(d[at:at + n], "big")
    return (v if keep_marker else v & ((1 << (7 * n)) - 1)), n


def ebml_elements(d: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[tuple[int, int, int, int]]:
    """(offset, id length, size length, id) of every element, depth first."""
    end = len(d) if end is None else end
    out, at = [], start
    while at < end:
        ident_n = _vint(d, at, True)
        size_n = _vint(d, at + ident_n[1], False) if ident_n else None
        if ident_n is None or size_n is None:
            break
        (ident, nid), (value, nsize) = ident_n, size_n
        body = at + nid + nsize
        unknown = value == (1 << (7 * nsize)) - 1
        stop = end if unknown else body + value
        if stop > end:
            break
        out.append((at, nid, nsize, ident))
        if ident in MKV_MASTERS and depth < 8:
            out.extend(ebml_elements(d, body, stop, depth + 1))
        at = stop
    return out


def mkv_ebml(d: bytes, r: random.Random) -> bytes:
    """Corrupt one element's size (same length: random, 0, too large, 'unknown') or its ID."""
    els = ebml_elements(d)
    if not els:
        return flip_bytes(d, r)
    at, nid, nsize, ident = r.choice(els)
    b = bytearray(d)
    if r.random() < 0.6:
        bits = 7 * nsize
        value = r.choice([0, 1, (1 << bits) - 1, (1 << bits) - 2, r.randrange(1 << bits)])
        b[at + nid:at + nid + nsize] = ((1 << bits) | value).to_bytes(nsize, "big")  # keeps the length marker
    else:
        b[at + 1:at + nid] = r.randbytes(nid - 1)
        b[at] = (b[at] & ~((1 << (8 - nid)) - 1) & 0xFF) | r.randrange(1 << (8 - nid))  # same ID length
        if b[at] == 0:
            b[at] = 0x80
    return bytes(b)


# AVI: RIFF chunks, 4-char id + 32-bit little-endian size; LIST chunks hold more.
def riff_chunks(d: bytes, start: int = 12, end: int | None = None, depth: int = 0) -> list[tuple[int, int, bytes]]:
    end = len(d) if end is None else end
    out, at = [], start
    while at + 8 <= end and depth < 6:
        kind, size = struct.unpack("<4sI", d[at:at + 8])
        if at + 8 + size > end:
            break
        out.append((at, size, kind))
        if kind in (b"LIST", b"RIFF") and size >= 4:
            out.extend(riff_chunks(d, at + 12, at + 8 + size, depth + 1))
        at += 8 + size + (size & 1)
    return out


def avi_riff(d: bytes, r: random.Random) -> bytes:
    """Corrupt one chunk's size or id, or one 32-bit field of avih/strh/strf/idx1."""
    chunks = riff_chunks(d)
    if not chunks:
        return flip_bytes(d, r)
    b = bytearray(d)
    headers = [c for c in chunks if c[2] in (b"avih", b"strh", b"strf", b"idx1") and c[1] >= 4]
    how = r.choice(["size", "id", "field", "field"])
    if how == "field" and headers:
        at, size, kind = r.choice(headers)
        f = at + 8 + 4 * r.randrange(min(size, 64) // 4)
        b[f:f + 4] = struct.pack("<I", r.choice([0, 1, 0xFFFFFFFF, r.randrange(1 << 32)]))
        return bytes(b)
    at, size, kind = r.choice(chunks)
    if how == "id":
        b[at:at + 4] = r.choice([b"JUNK", b"00dc", b"01wb", b"LIST", r.randbytes(4)])
    else:
        b[at + 4:at + 8] = struct.pack("<I", r.choice([0, 1, size - 1, size + 1, size * 2, 0xFFFFFFFF,
                                                       r.randrange(1 << 32)]) & 0xFFFFFFFF)
    return bytes(b)


GENERIC = {"flip": flip_bytes, "zero": zero_block, "dup": duplicate_chunk, "remove": remove_chunk, "cut": cut,
           "header": scramble_header, "random": random_block}
STRUCTURED = {"mp4": ("mp4_box", mp4_box), "mkv": ("mkv_ebml", mkv_ebml), "webm": ("mkv_ebml", mkv_ebml),
              "avi": ("avi_riff", avi_riff), "divx": ("avi_riff", avi_riff)}


def mutators_for(seed: str) -> list[tuple[str, Callable[[bytes, random.Random], bytes]]]:
    """Generic damage plus the container's own, which gets three slots (it finds the most)."""
    structured = STRUCTURED[seed]
    return list(GENERIC.items()) + [structured] * 3


# ---- checking one outcome -------------------------------------------------------------------------

def mosaic_of(region: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """``region`` (cut at x0, y0 from a frame) mosaicked with the frame-aligned 25 px grid."""
    out = region.astype(np.float32).copy()
    h, w = region.shape[:2]
    for cy in range(-(y0 % CELL), h, CELL):
        for cx in range(-(x0 % CELL), w, CELL):
            cell = out[max(cy, 0):cy + CELL, max(cx, 0):cx + CELL]
            cell[:] = cell.reshape(-1, 3).mean(0)
    return out


def leaked(frame: np.ndarray, seed_frame: np.ndarray, box) -> bool:
    """The face in ``box`` is recognisable: around its eyes (the band from 20% to 60% of its height,
    what identifies a person) the output is closer to the face than to the face's mosaic. Damage
    that smeared the eyes away (a chin is all that is left) is not a face shown."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if min(x2 - x1, y2 - y1) < 12:
        return False  # a sliver at the frame edge
    y1, y2 = y1 + (y2 - y1) // 5, y1 + (y2 - y1) * 3 // 5
    face = seed_frame[y1:y2, x1:x2].astype(np.float32)
    out = frame[y1:y2, x1:x2].astype(np.float32)
    return float(np.abs(out - face).mean()) < float(np.abs(out - mosaic_of(seed_frame[y1:y2, x1:x2], x1, y1)).mean())


def leaks(seed: Seed, output: Path) -> list[str]:
    """Output frames that show a face of the seed, matched by time (or, at a time the seed does not
    have, against every seed frame). Raises if the output does not decode."""
    found, last = [], None
    period = 1 / FPS
    with av.open(str(output)) as c:
        n = 0
        for f in c.decode(video=0):
            t = float(f.pts * f.time_base) if f.pts is not None else None
            if t is None or (last is not None and t <= last):
                found.append(f"output frame {n}: time {t} does not increase")
            last = t if t is not None else last
            img = f.to_ndarray(format="rgb24")
            if img.shape != seed.frames[0].shape:
                found.append(f"output frame {n}: size {img.shape[1]}x{img.shape[0]}")
                continue
            i = int(np.argmin([abs(s - t) for s in seed.times])) if t is not None else -1
            near = [i] if i >= 0 and abs(seed.times[i] - t) < period / 2 else range(len(seed.times))
            for j in near:
                for box in seed.boxes[j]:
                    if leaked(img, seed.frames[j], box):
                        found.append(f"output frame {n} (t={t:.3f}) shows the face of seed frame {j} at "
                                     f"{[round(v) for v in box]}")
            n += 1
    if n == 0:
        found.append("output has no frames")
    return found


@dataclasses.dataclass
class Outcome:
    case: str
    seed: str
    mutator: str
    verdict: str      # ok, refused, failure
    detail: str
    seconds: float


CLI = [sys.executable, "-m", "trt_anon"]


def run_case(seed: Seed, mutator: str, data: bytes, work: Path, case: str, timeout: float,
             keep: Path | None, cli: list[str] = CLI) -> Outcome:
    """Run the CLI on ``data`` (written as CASE.ext) and judge what it did."""
    d = work / case
    src_dir, out_dir = d / "in", d / "out"
    src_dir.mkdir(parents=True)
    out_dir.mkdir()
    src = src_dir / f"{case}{seed.path.suffix}"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    cmd = [*cli, str(src), "-o", str(out_dir), "-q"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, ""
    secs = time.perf_counter() - t0
    left = sorted(p.name for p in out_dir.iterdir())
    problems: list[str] = []
    verdict = "failure"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc is None:
        problems.append(f"hang: no exit within {timeout:.0f} s")
    elif rc < 0:
        problems.append(f"crash: killed by signal {-rc}")
    elif "Traceback" in err or "internal error" in err:
        problems.append("unexpected exception: " + (lines[-1] if lines else ""))
    elif rc == 1:
        if len(lines) != 1 or not lines[0].startswith("trt-anon: error: "):
            problems.append(f"error is not one line: {err.strip()[:300]!r}")
        if left:
            problems.append(f"left behind after an error: {left}")
        verdict = "refused" if not problems else verdict
    elif rc == 0:
        if len(left) != 1 or left[0].startswith("."):
            problems.append(f"output folder holds {left}")
        else:
            try:
                problems.extend(leaks(seed, out_dir / left[0]))
            except (av.error.FFmpegError, ValueError) as exc:
                problems.append(f"output does not decode: {exc}")
        verdict = "ok" if not problems else verdict
    else:
        problems.append(f"exit {rc}: {err.strip()[-300:]!r}")
    if hashlib.sha256(src.read_bytes()).hexdigest() != digest:
        problems.append("input was modified")
        verdict = "failure"
    detail = "; ".join(problems[:3]) if problems else (lines[0] if lines else "")
    if verdict == "failure" and keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, keep / src.name)
        (keep / f"{case}.txt").write_text(f"{' '.join(cmd)}\nexit {rc}\n{detail}\n\n{err}")
    shutil.rmtree(d, ignore_errors=True)
    return Outcome(case, seed.name, mutator, verdict, detail, round(secs, 2))


def plan(seeds: list[Seed], cases: int, master: int) -> list[tuple[Seed, str, Callable, random.Random, str]]:
    """Case k: seed k mod S, the next mutator of that seed's list, an RNG seeded by (master, k)."""
    out = []
    for k in range(cases):
        seed = seeds[k % len(seeds)]
        muts = mutators_for(seed.name)
        name, fn = muts[(k // len(seeds)) % len(muts)]
        out.append((seed, name, fn, random.Random(f"{master}:{k}"), f"case{k:04d}_{seed.name}_{name}"))
    return out


def campaign(cases: int, jobs: int, master: int = 1, timeout: float = 120, only: list[str] | None = None,
             mutator: str | None = None, keep: Path | None = None, work: Path | None = None,
             cli: list[str] = CLI, pick: list[int] | None = None,
             log: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[Outcome]:
    """Make the seeds, run ``cases`` damaged copies (``jobs`` at a time), return every outcome.
    ``pick`` keeps only those case numbers (to rerun one); the others are still planned, so case k
    is always the same bytes."""
    with tempfile.TemporaryDirectory(prefix="trt_anon_fuzz_", dir=work) as tmp:
        tmp_path = Path(tmp)
        seeds = make_seeds(tmp_path / "seeds", only)
        todo = [t for k, t in enumerate(plan(seeds, cases, master)) if not pick or k in pick]
        if mutator:
            todo = [t for t in todo if t[1] == mutator]
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(run_case, seed, name, fn(seed.path.read_bytes(), rng), tmp_path, case, timeout,
                                   keep, cli) for seed, name, fn, rng, case in todo]
            outcomes = []
            for f in futures:
                o = f.result()
                outcomes.append(o)
                if o.verdict == "failure":
                    log(f"FAILURE {o.case}: {o.detail}")
                elif len(outcomes) % 50 == 0:
                    log(f"{len(outcomes)} cases")
        return outcomes


def summary(outcomes: list[Outcome]) -> str:
    rows = ["seed   cases  ok  refused  failures"]
    for name in dict.fromkeys(o.seed for o in outcomes):
        mine = [o for o in outcomes if o.seed == name]
        rows.append(f"{name:6} {len(mine):5} {sum(o.verdict == 'ok' for o in mine):3} "
                    f"{sum(o.verdict == 'refused' for o in mine):8} {sum(o.verdict == 'failure' for o in mine):9}")
    rows.append(f"{'all':6} {len(outcomes):5} {sum(o.verdict == 'ok' for o in outcomes):3} "
                f"{sum(o.verdict == 'refused' for o in outcomes):8} "
                f"{sum(o.verdict == 'failure' for o in outcomes):9}")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=600, help="damaged files to try (default 600)")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    p.add_argument("--seed", type=int, default=2, help="master seed: the same seed gives the same cases (default 2)")
    p.add_argument("--timeout", type=float, default=120, help="seconds before a case counts as a hang")
    p.add_argument("--only", nargs="*", help="seed clips to use: mp4 mkv webm avi divx")
    p.add_argument("--mutator", help="only this mutator (flip, zero, dup, remove, cut, header, random, "
                   "mp4_box, mkv_ebml, avi_riff)")
    p.add_argument("--pick", type=int, nargs="*", help="only these case numbers")
    p.add_argument("--keep", type=Path, help="copy failing inputs (and their stderr) here")
    p.add_argument("--json", type=Path, help="write every outcome here")
    a = p.parse_args()
    t0 = time.perf_counter()
    outcomes = campaign(a.cases, a.jobs, a.seed, a.timeout, a.only, a.mutator, a.keep, pick=a.pick)
    print(summary(outcomes))
    print(f"{time.perf_counter() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps([dataclasses.asdict(o) for o in outcomes], indent=1))
    return 1 if any(o.verdict == "failure" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
