"""Many files, many machines: ``process_many`` runs files, and segments of long files, as Ray tasks.

Ray does placement, resources and retries; this module only says what a task is:
- a whole file: ``process()`` in a worker;
- a segment of a long file: the same stages (``stages.choose``) and loop (``pipeline.run``) over a
  frame range, with ``context_frames`` decoded and tracked on each side so that hold, back-fill and
  eye bands are what a whole run gives, encoded (x264 ``stitchable``, a keyframe first) into a
  zero-based MP4 piece; a join task then copies the pieces' packets into the output with the input's
  own timestamps, and audio/subtitles/metadata from the source by ``process()``'s rules.

Ray is imported only inside functions: the rest of the package never needs it. Inputs and outputs
must be on storage every node sees (the same paths).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import resource
import shutil
import socket
import tempfile
import time
from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from .config import Config
from .errors import AnonError, ConfigError
from .plan import Plan, files_at_once, plan
from .report import BoxLog, Report

MAX_RETRIES = 3                 # a worker (or node) lost mid-task: Ray runs the task again
OBJECT_STORE = 128 * 2 ** 20    # results are small (reports, paths): keep Ray's shared memory small
TRACKS_PER_SEGMENT = 1 << 20   # a segment's faces are numbered from its number times this (one numbering per file)
MIN_SEGMENT = 300               # frames: shorter segments spend more on context and start-up than they save
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # a local instance binds 127.0.0.1, not the host's address
           "RAY_USAGE_STATS_ENABLED": "0"}


def context_frames(config: Config) -> int:
    """Frames decoded and tracked on each side of a segment, so its boxes equal a whole run's.

    A frame is final ``ttl`` frames later (back-fill), a held track lives ``ttl`` frames, eye bands
    refresh every ``eyes_every`` frames, and a tracker with ``lookback`` back-fills that far: twice
    their sum lets every track alive at a cut be born, hit and refreshed inside the context."""
    return 2 * (config.ttl + config.eyes_every + config.lookback)


@dataclass(frozen=True)
class Segment:
    """Frames ``start..end`` (display order) of a file, decoded from ``first`` to ``stop`` for context."""

    number: int
    seek_pts: int     # keyframe at or before ``first``: decoding starts there
    seek_index: int   # its frame index
    first: int        # first frame detected and tracked (context before)
    start: int        # first frame written
    end: int          # one past the last frame written
    stop: int         # one past the last frame decoded (context after)


def plan_segments(job: Plan, segment_frames: int) -> list[Segment]:
    """Cut at the input's keyframes about every ``segment_frames`` frames; none (one task) when it cannot.

    Context edges are rounded out to whole batches counted from frame 0, so every frame is detected in
    the same batch as in a whole run (a detector need not be deterministic across batch shapes)."""
    import av

    from .media.container import video_stream

    config, path = job.config, job.source
    if job.photo or config.codec != "h264" or job.decisions is not None:
        return []  # x264's stitchable keeps every piece's headers identical; other encoders make no such promise
    with av.open(str(path)) as c:
        if not any(n in c.format.name for n in ("mp4", "mov", "matroska")):
            return []  # containers whose timestamps need reordering (AVI) or guessing: one task
        s = video_stream(c)
        pkts = [(p.pts, p.is_keyframe) for p in c.demux(s) if p.size]
    if not pkts or any(t is None for t, _ in pkts) or len(pkts) < 2 * segment_frames:
        return []
    order = sorted(t for t, _ in pkts)
    if len(set(order)) != len(order):
        return []
    keys = sorted(order.index(t) for t, k in pkts if k)  # display indices of the keyframes
    if not keys or keys[0] != 0:
        return []
    cuts = [0]
    for k in keys:
        if k - cuts[-1] >= segment_frames and len(order) - k >= segment_frames // 2:
            cuts.append(k)
    if len(cuts) < 2:
        return []
    cuts.append(len(order))
    ctx, batch = context_frames(config), config.batch_size
    out = []
    for n, (a, b) in enumerate(zip(cuts, cuts[1:])):
        first = max(0, (a - ctx) // batch * batch)
        stop = min(len(order), math.ceil((b + ctx) / batch) * batch)
        seek = keys[bisect_right(keys, first) - 1]
        out.append(Segment(n, order[seek], seek, first, a, b, stop))
    return out


def _range_decoder(container, batch_size: int, seg: Segment, planar=()):
    """A PyAV decoder over frames ``seg.first..seg.stop`` of the file, from a seek to its keyframe."""
    from .decode import PyAVDecoder

    class RangeDecoder(PyAVDecoder):
        def frames(self) -> Iterator:
            self.container.seek(seg.seek_pts, stream=self.stream, backward=True, any_frame=False)
            index = seg.seek_index
            for frame in super().frames():
                if frame.pts is not None and frame.pts < seg.seek_pts:
                    continue  # an open GOP's leading frames belong to the previous segment
                if index >= seg.stop:
                    return
                if index >= seg.first:
                    yield frame
                index += 1

    return RangeDecoder(container, batch_size, planar)


class _ZeroBased:
    """The encoder, fed timestamps that start at 0 in each piece: an MP4 piece not starting at 0
    loses timestamp precision (DESIGN: movie timescale); the join adds ``offset`` back."""

    def __init__(self, encoder) -> None:
        self.encoder, self.offset = encoder, None

    def encode(self, frames, pts: list[int]) -> None:
        if self.offset is None:
            self.offset = pts[0]
        self.encoder.encode(frames, [t - self.offset for t in pts])

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)


class _Bar:
    """A tqdm-like ``progress`` for process()/run() in a task: frames counted by the driver's actor."""

    total = 0

    def __init__(self, counter) -> None:
        self.counter = counter

    def update(self, n: int) -> None:
        self.counter.add.remote(n)

    def refresh(self) -> None:
        pass

    def reset(self) -> None:
        pass


def _where() -> dict:
    import ray

    ctx = ray.get_runtime_context()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux: this worker's peak so far
    return {"node": ctx.get_node_id()[:8], "host": socket.gethostname(),
            "gpu": [str(g) for g in ray.get_gpu_ids()], "pid": os.getpid(), "peak_rss_mib": round(peak)}


def run_file(job: Plan, counter) -> Report:
    """Task: one whole file, exactly as ``process()`` runs it."""
    from .api import execute

    report = execute(job, progress=_Bar(counter))
    report.placement = [{**_where(), "part": "file", "frames": report.frames}]
    return report


def run_segment(job: Plan, seg: Segment, piece: str, counter) -> dict:
    """Task: one segment into ``piece`` (video only) and ``piece``.jsonl (its boxes)."""
    import av

    from . import media, stages
    from .pipeline import Stages, run

    src, src_path, config = str(job.source), job.source, job.config
    notes: list[str] = []
    report = Report(src, piece)
    container = media.open_input(src_path)
    try:
        stream = media.container.video_stream(container)
        info = media.VideoInfo.of(container, stream)
        decoder = _range_decoder(container, config.batch_size, seg, stages.planar_formats(config, info))
        chosen = stages.choose(src_path, decoder, info, config, notes, whole_file=False)
        with open(piece + ".jsonl", "w", encoding="utf-8") as json_out, av.open(piece, "w", format="mp4") as out:
            encoder = stages.select_encoder(out, info, decoder, decoder.colorspace, config, chosen.gpu, notes,
                                            stitchable=True)
            in_cc = stream.codec_context
            encoder.set_colour(in_cc.color_primaries, in_cc.color_trc)
            note = encoder.carry_hdr(media.container.hdr_metadata(src_path, stream.index))
            if note:
                notes.append(note)
            zero = _ZeroBased(encoder)
            replay = None if chosen.gpu else stages.replay_decoder(
                src_path, decoder, info, config, make=lambda c, n, p: _range_decoder(c, n, seg, p))
            try:
                run(Stages(chosen.decoder, chosen.detector, chosen.redactor, zero, replay=replay and replay.frames(),
                           layout=decoder.layout),
                    config, report, decoder.rotation, BoxLog(json_out, envelope=False), _Bar(counter),
                    first=seg.first, keep=(seg.start, seg.end), first_track=seg.number * TRACKS_PER_SEGMENT)
            finally:
                if replay is not None:
                    replay.container.close()
    finally:
        container.close()
    if report.frames != seg.end - seg.start or decoder.errors or decoder.read_error or decoder.resized:
        raise AnonError(f"{src}: segment {seg.number} gave {report.frames} of {seg.end - seg.start} frames "
                        f"({decoder.errors} damaged packets); run it without segments")
    report.backends = {"decode": chosen.decoder_name, "detect": chosen.detector.name,
                       "redact": chosen.redactor.name, "encode": encoder.name}
    report.warnings[:0] = notes
    report.placement = [{**_where(), "part": f"segment {seg.number}", "frames": report.frames}]
    return {"report": report, "piece": piece, "offset": zero.offset, "rotation": decoder.rotation}


def join(job: Plan, *parts: dict) -> Report:
    """Task: the pieces' packets into the output with the input's timestamps (no second encode), audio,
    subtitles and metadata from the input as ``process()`` copies them; fail-closed like ``process()``."""
    import av

    from . import audit, media
    from .sink import dress_output

    started = time.perf_counter()
    src, src_path, dst_path = str(job.source), job.source, job.output
    report = Report(src, str(dst_path))
    for p in parts:
        r: Report = p["report"]
        for k in ("frames", "faces", "frames_with_faces", "redacted_boxes"):
            setattr(report, k, getattr(report, k) + getattr(r, k))
        report.max_faces = max(report.max_faces, r.max_faces)
        for k, v in r.seconds.items():
            report.seconds[k] = report.seconds.get(k, 0.0) + v
        report.placement += r.placement
        report.kept += r.kept   # each segment numbers its tracks apart
        report.warnings += [w for w in r.warnings if w not in report.warnings]
    report.backends = dict(parts[0]["report"].backends)
    _same_format(src, [p["piece"] for p in parts])  # before anything is written
    container = media.open_input(src_path)
    try:
        stream = media.container.video_stream(container)
        tb = stream.time_base
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(media.atomic_output(dst_path, True))
            log = None
            if job.json is not None:
                json_tmp = stack.enter_context(media.atomic_output(job.json, True))
                log = BoxLog(stack.enter_context(open(json_tmp, "w", encoding="utf-8")))
            out = stack.enter_context(av.open(str(tmp), "w", options=media.container.muxer_options(dst_path, tb)))
            with av.open(parts[0]["piece"]) as first:
                vstream = out.add_stream_from_template(first.streams.video[0])
            vstream.time_base = tb
            remuxer = dress_output(src_path, container, stream, out, None, job.config, parts[0]["rotation"], report)
            stack.callback(remuxer.close)
            last = None
            for p in parts:
                with av.open(p["piece"]) as piece:
                    for pkt in piece.demux(piece.streams.video[0]):
                        if not pkt.size:
                            continue
                        ptb = pkt.time_base
                        pkt.pts = p["offset"] + _rescale(pkt.pts, ptb, tb)
                        pkt.dts = p["offset"] + _rescale(pkt.dts, ptb, tb)
                        pkt.stream, pkt.time_base = vstream, tb
                        out.mux(pkt)
                        remuxer.advance(float(pkt.dts * tb))
                        last = pkt.pts if last is None else max(last, pkt.pts)
                if log is not None:
                    with open(p["piece"] + ".jsonl", encoding="utf-8") as lines:
                        for line in lines:
                            log.add_line(line)
            remuxer.advance(None)
            report.warnings.extend(remuxer.warnings())
            report.duration = float(last * tb) if last is not None else 0.0
            report.wall = time.perf_counter() - started  # the driver makes it the file's time in the job
            out.close()  # complete: for its Content Credentials and the audit record's hash
            if job.config.sign:  # the joined file is signed once, as a whole (its pieces never are)
                from . import provenance
                provenance.sign(tmp, job, report)
            if log is not None:
                log.close(report, audit.record(job.source, job.output, tmp, job.config, report))
    except av.error.FFmpegError as exc:
        raise AnonError(f"joining the segments of {src} failed: {exc}") from None
    finally:
        container.close()
    return report


def _same_format(src: str, pieces: list[str]) -> None:
    """Pieces are joined as they are, so all must be one format: each segment keeps the pixel format and size of
    its own first frame, and a video that changes them mid-file gives pieces that cannot be one stream."""
    import av

    def fmt(piece: str) -> tuple:
        with av.open(piece) as c:
            cc = c.streams.video[0].codec_context
            return cc.pix_fmt, cc.width, cc.height

    formats = {fmt(p) for p in pieces}
    if len(formats) > 1:
        raise AnonError(f"{src}: its segments were written in different formats "
                        f"({', '.join(f'{f} {w}x{h}' for f, w, h in sorted(formats))}; the video changes format "
                        "mid-file); run it without segments")


def _rescale(t: int | None, src: Fraction, dst: Fraction) -> int | None:
    return None if t is None else int(Fraction(t) * src / dst)


def _sidecar(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.trt_anon.json")


def _stamp(src: Path, config: Config) -> dict:
    """What makes an output finished for ``skip_existing``: the input as it was, and the options."""
    st = src.stat()
    opts = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("overwrite", "json_path", "sign")}
    if config.sign:  # signed with which certificate (its hash), never where the key is kept
        from .audit import sha256
        opts["sign"] = sha256(Path(config.sign if isinstance(config.sign, str) else config.sign[0]))
    return {"input": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "options": opts}


def _finished(src: Path, dst: Path, config: Config) -> Report | None:
    """The saved report if ``dst`` was made from this input with these options, else None (redo)."""
    try:
        saved = json.loads(_sidecar(dst).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not dst.exists() or {k: saved.get(k) for k in ("input", "size", "mtime_ns", "options")} != \
            json.loads(json.dumps(_stamp(src, config))):
        return None
    fields = {f.name for f in dataclasses.fields(Report)}
    return Report(**{k: v for k, v in saved["report"].items() if k in fields})


def _import_ray(local: bool = False):
    """Ray, or a one-line error saying how to install it. ``local``: Ray reads RAY_ENV when it is
    imported (and its processes inherit it), so they are set first."""
    if local:
        os.environ.update(RAY_ENV)
    try:
        import ray
    except ImportError:
        ray = None
    if not hasattr(ray, "init"):  # (a folder named ray where Python looks first, Ray's /tmp/ray say, is no Ray)
        raise ConfigError("Ray is not installed: pip install 'trt_anon[ray]'")
    return ray


def connect(address: str | None = None, workers: int | None = None) -> bool:
    """Join ``address`` ("auto" or host:port), or start a local instance on 127.0.0.1 (no dashboard,
    no usage stats, a small object store). True when this call started Ray (and should stop it)."""
    local = address in (None, "local")
    ray = _import_ray(local)
    if ray.is_initialized():
        return False
    if local:
        ray.init(address="local", num_cpus=workers or os.cpu_count(), include_dashboard=False,
                 object_store_memory=OBJECT_STORE, log_to_driver=False, configure_logging=False,
                 _node_ip_address="127.0.0.1")
    else:
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    return True


def process_many(inputs, output_dir: str | os.PathLike | None = None, ray_address: str | None = None,
                 workers: int | None = None, skip_existing: bool = False, segment_frames: int | None = None,
                 progress: bool = True, **options) -> list[Report]:
    """Anonymize many files on Ray; long files are split into segments. One Report per input, in order.

    A file that fails has ``report.error`` (its one-line error) and no output; the others go on.
    ``skip_existing`` keeps outputs whose sidecar says they come from this input (size, mtime) with
    these options; anything else is redone. ``segment_frames`` (default: every worker busy, segments of
    at least MIN_SEGMENT frames); 0 never splits. Outputs go to ``output_dir`` (default: beside each input).
    """
    ray = _import_ray(local=ray_address in (None, "local"))
    config = Config.from_options(**options)
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    if config.json_path:
        Path(config.json_path).mkdir(parents=True, exist_ok=True)
    started_ray = connect(ray_address, workers)
    started = time.perf_counter()
    work: list[str] = []  # piece folders, beside their outputs (storage every node sees)
    try:
        return _run_all([Path(p) for p in inputs], output_dir, config, workers, skip_existing, segment_frames,
                        progress, work, started)
    finally:
        for folder in work:
            shutil.rmtree(folder, ignore_errors=True)  # pieces go on success, failure and Ctrl-C alike
        if started_ray:
            ray.shutdown()


def _plan(src: Path, output_dir, config: Config, skip_existing: bool, batch_size: int) -> tuple[Plan, Report | None]:
    """The file's plan, as ``process()`` makes it, for the tasks' batch size; and its finished report
    when ``skip_existing`` finds its output made from this input with these options (else it is redone)."""
    if not skip_existing:
        return plan(src, output_dir, config, batch_size=batch_size), None
    job = plan(src, output_dir, config, batch_size=batch_size, overwrite=True)  # unfinished or stale: redo it
    return job, _finished(src, job.output, job.config)


def _run_all(inputs: list[Path], output_dir, config: Config, workers, skip_existing, segment_frames, progress,
             work: list[str], started: float) -> list[Report]:
    import ray
    from tqdm import tqdm

    have = ray.cluster_resources()
    gpu = config.backend != "cpu" and have.get("GPU", 0) > 0
    # one batch size for the whole job, the tasks' backend's (segments are cut at whole batches)
    batch_size = config.batch_for(gpu)
    slots, opts = task_resources(have, gpu, workers, files_at_once(config, inputs) if gpu else 1)
    file_task = ray.remote(max_retries=MAX_RETRIES, **opts)(run_file)
    seg_task = ray.remote(max_retries=MAX_RETRIES, **opts)(run_segment)
    join_task = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(join)
    counter = ray.remote(num_cpus=0)(_Counter).remote()

    results: list[Report | None] = [None] * len(inputs)
    plans = {}
    for i, src in enumerate(inputs):
        try:
            plans[i], results[i] = _plan(src, output_dir, config, skip_existing, batch_size)
        except (AnonError, OSError) as exc:
            results[i] = Report(str(src), "", error=str(exc) if isinstance(exc, AnonError) else f"{src}: {exc}")
    todo = {i: job for i, job in plans.items() if results[i] is None}
    total = sum(job.frames for job in todo.values())
    seg_len = segment_frames if segment_frames is not None else max(MIN_SEGMENT, math.ceil(total / (2 * slots)))

    refs: dict[Any, int] = {}
    pieces: dict[int, str] = {}
    for i, job in todo.items():
        segs = plan_segments(job, seg_len) if seg_len else []
        if not segs:
            refs[file_task.remote(job, counter)] = i
            continue
        work.append(tempfile.mkdtemp(prefix=".trt_anon-segments-", dir=job.output.parent))
        pieces[i] = work[-1]
        parts = [seg_task.remote(job, s, str(Path(work[-1]) / f"{s.number}.mp4"), counter) for s in segs]
        refs[join_task.remote(job, *parts)] = i  # Ray resolves top-level refs

    bar = tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, timeout=0.5)
            bar.update(ray.get(counter.count.remote()) - bar.n)
            for ref in done:
                i = refs[ref]
                if i in pieces:  # the file is joined (or failed): its pieces are no longer needed
                    shutil.rmtree(pieces[i], ignore_errors=True)
                try:
                    results[i] = ray.get(ref)
                except Exception as exc:  # a task's error, or one Ray gave up retrying
                    cause = getattr(exc, "cause", None) or exc
                    msg = str(cause) if isinstance(cause, AnonError) else f"{type(cause).__name__}: {cause}"
                    results[i] = Report(str(inputs[i]), "", error=msg.strip().splitlines()[-1])
                    continue
                if len(results[i].placement) > 1:  # segments: the file took from the job's start until now
                    results[i].wall = time.perf_counter() - started
                job = plans[i]
                _sidecar(job.output).write_text(
                    json.dumps({**_stamp(inputs[i], job.config), "report": results[i].to_dict()}), encoding="utf-8")
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True, recursive=True)
        raise
    finally:
        bar.close()
    reports = [r for r in results if r is not None]
    if progress:
        print(summary(reports, time.perf_counter() - started))
    return reports


def task_resources(have: dict, gpu: bool, workers: int | None, per_gpu: int = 1) -> tuple[int, dict]:
    """How many tasks run at once and what each asks Ray for. A task's size makes at most ``slots`` run at once:
    one core each on the CPU; on GPUs ``per_gpu`` each (``plan.files_at_once``: as many as fit one GPU's memory,
    each with its own NVDEC session), a fraction of a GPU each; ``workers`` asks for fewer (or, on GPUs, more
    GPUs a task where there are more GPUs than workers)."""
    if not gpu:
        slots = workers or int(have.get("CPU", 1))
        return slots, {"num_cpus": max(1.0, have.get("CPU", 1) / slots)}
    slots = workers or int(have["GPU"]) * per_gpu
    share = have["GPU"] / slots
    # Ray counts GPU shares to 1/10000: rounded down, so that ``per_gpu`` of them fit on one GPU
    return slots, {"num_gpus": math.floor(share * 10000) / 10000 if share < 1 else max(1, int(share)), "num_cpus": 1}


class _Counter:
    """Frames done across the cluster, for the one progress bar (a retried task counts again)."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def count(self) -> int:
        return self.n


def summary(reports: list[Report], wall: float) -> str:
    """Files, frames, fps, failures, and each node's share of the frames."""
    frames = sum(r.frames for r in reports if not r.error)
    failed = sum(1 for r in reports if r.error)
    nodes: dict[str, int] = {}
    for r in reports:
        for p in r.placement:
            key = p["host"] + ":" + p["node"] + (f" gpu{','.join(p['gpu'])}" if p["gpu"] else "")
            nodes[key] = nodes.get(key, 0) + p["frames"]
    share = ", ".join(f"{k} {100 * v / max(frames, 1):.0f}%" for k, v in sorted(nodes.items()))
    return (f"{len(reports) - failed} of {len(reports)} files, {frames} frames in {wall:.1f}s "
            f"({frames / wall if wall else 0:.1f} fps), {failed} failed; per node: {share or '-'}")
