"""Every decision about one input, made once before a frame is decoded: ``plan(source, output, config)``.

The output's path, container and codec, the quality, the batch size for the backend the run takes, the
JSON and review paths, and why any default changed. ``process()`` executes a plan; ``process_many`` sends
plans to Ray tasks (a whole file, or a frame range of one) which execute exactly what was decided.
Every refusal (an output that exists, a stream its container cannot hold, a crf out of range) happens
here, before any file is written.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from . import cuda, media
from .config import Config
from .decode.pyav import bit_depth
from .encode import CODECS, choose_codec
from .encode.codecs import check_crf
from .errors import BackendError, OutputError
from .planar import FORMATS as PLANAR


@dataclass(frozen=True)
class Plan:
    """One input's run, decided."""

    source: Path
    output: Path
    config: Config            # settled: codec and crf for the output, batch size for the backend
    asked: Config             # as asked, before settling: a fallback is planned again from it
    photo: bool               # a still, written as a still with Pillow
    named: bool               # the user named the output file (not a folder)
    frames: int = 0           # the header's frame count (for progress); 0 when unknown
    json: Path | None = None  # per-frame boxes and the report
    review: Path | None = None  # the review page, written once the video is in place
    originals: bool = False   # the review page shows the unredacted input too
    notes: tuple[str, ...] = ()  # why a default changed (codec for 10-bit, photo format): the report's first warnings
    decisions: Any = None     # decisions.Decisions: a first run's faces as the user decided, rendered again

    @property
    def convert_audio(self) -> bool:
        """A container the user named gets the audio it needs (WebM: Opus), as with ffmpeg; ours copies it."""
        return self.named and not self.photo


def use_gpu(cfg: Config, image: bool) -> bool:
    """Whether this run takes the GPU path; backend 'gpu' with no usable GPU is an error."""
    if cfg.backend == "cpu" or image:
        return False
    if cuda.available():
        return True
    if cfg.backend == "gpu":
        raise BackendError("backend 'gpu' asked for, but no CUDA GPU is usable here (needs cupy and a GPU)")
    return False


# Several files at once on one GPU: each has its own NVDEC session, detector, redactor and encoder thread. What
# one takes, measured: 11.2 GiB peak for 1080p in batches of 32 on an H200 (bench-results/gpu), less after the
# detector dropped maps it had read; counted as 12 GiB, in proportion to frame size and batch. At most one a NVDEC
# engine (H100 and H200 have 7): more would queue on the engines for nothing.
GPU_BYTES_PER_FILE = 12 << 30        # for 1920x1080 frames in batches of 32
MOST_FILES_PER_GPU = 7


def files_at_once(cfg: Config, sources: list[Path]) -> int:
    """How many of ``sources`` to run at once: one on the CPU path (the detector already uses every core), else
    as many videos as fit in the GPU's free memory now, for the largest frame among them, at most
    ``MOST_FILES_PER_GPU``. A file that cannot be read counts as 1080p (it fails on its own when its turn comes)."""
    videos = [Path(s) for s in sources if not media.is_image(Path(s))]
    try:
        if len(videos) < 2 or not use_gpu(cfg, image=False):
            return 1
    except BackendError:  # backend "gpu" without one: each file's run says so
        return 1
    largest = 1920 * 1080
    for src in videos:
        try:
            with media.open_input(src) as container:
                stream = media.container.video_stream(container)
                largest = max(largest, stream.codec_context.width * stream.codec_context.height)
        except Exception:  # unreadable here: its own run says why
            continue
    per_file = GPU_BYTES_PER_FILE * largest / (1920 * 1080) * cfg.batch_for(gpu=True) / 32
    return max(1, min(len(videos), MOST_FILES_PER_GPU, int(cuda.free_bytes() * 0.9 // per_file)))


def plan(source: str | os.PathLike, output: str | os.PathLike | None = None, config: Config | None = None, *,
         review: bool | str | os.PathLike | None = None, originals: bool = False, **changes) -> Plan:
    """Decide the run of ``source`` into ``output`` (default ``NAME.anon.EXT`` beside it; a folder: in it).

    ``changes`` are Config fields decided by the caller for this run (a smaller batch after the GPU ran out of
    memory, ``overwrite`` for a stale output in a folder run); the Config is settled here and nowhere else.
    Raises InputError / OutputError / ConfigError / BackendError with one line."""
    src = Path(source)
    cfg = dataclasses.replace(config or Config(), **changes)
    named = output is not None and not Path(output).is_dir()
    notes: list[str] = []
    settled: dict = {}
    if media.is_image(src):
        dst, frames = _photo_output(src, output, cfg, notes), 1
        settled["batch_size"] = cfg.batch_for(gpu=False)
    else:
        container = media.open_input(src)
        try:
            dst = media.resolve_output(src, output, cfg.overwrite, lambda ext: media.container.fits(container, ext))
            if media.is_image(dst):
                raise OutputError(f"output {dst} is an image file name but {src} is a video")
            stream = media.container.video_stream(container)
            info = media.VideoInfo.of(container, stream)
            settled.update(_codec(cfg, container, stream, dst, notes, convert_audio=named))
            settled["batch_size"] = cfg.batch_for(use_gpu(cfg, info.is_image), info.width * info.height)
            frames = info.frames
        finally:
            container.close()
    if cfg.sign:  # a container the library signs, credentials it accepts: refused here, before any work
        from . import provenance
        provenance.check(cfg.sign, dst)
    page = None
    if review:
        from .review import require, review_path
        require()
        page = media.resolve_output(src, review_path(review, dst), cfg.overwrite, what="review page", ext=".html")
    json = None
    if cfg.json_path:
        json = Path(cfg.json_path)
        if json.is_dir():
            json = json / f"{src.stem}.anon.json"
        json = media.resolve_output(src, json, cfg.overwrite, what="JSON file", ext=".json")
    # one file each: a JSON file or page at the video's path would be replaced by it (or stop the run at its end)
    written = [(what, path) for what, path in (("output", dst), ("JSON file", json), ("review page", page)) if path]
    for k, (what, path) in enumerate(written):
        for other, there in written[:k]:
            if path.resolve() == there.resolve():
                raise OutputError(f"the {what} and the {other} are both {path}; give each its own name")
    if cfg.keep_faces:  # the photos read (once for many files) and refused now, not after the first frames
        from .consent import people
        people(cfg.keep_faces)
        if media.is_image(src):
            notes.append("--keep-face: a photo is one look at each face, not the several a match needs; every face "
                         "in it is redacted")
    decisions = None
    if cfg.decisions_path:
        from .decisions import Decisions
        decisions = Decisions.load(cfg.decisions_path, src)
        decisions.check(cfg)
    return Plan(src, dst, dataclasses.replace(cfg, **settled), cfg, media.is_image(src), named, frames or 0, json,
                page, originals, tuple(notes), decisions)


def fallbacks(job: Plan) -> Iterator[Plan]:
    """The plans to try, in order, after ``job`` ran out of GPU memory: a quarter of the GPU batch, then the CPU."""
    asked = job.asked
    again = {"output": job.output if job.named else job.output.parent, "config": asked, "review": job.review,
             "originals": job.originals}
    gpu_batch = asked.batch_for(gpu=True)
    if asked.backend != "cpu" and gpu_batch > 4:
        yield plan(job.source, **again, batch_size=max(4, gpu_batch // 4))
    if asked.backend == "auto":
        yield plan(job.source, **again, backend="cpu")


def _photo_output(src: Path, output, cfg: Config, notes: list[str]) -> Path:
    """Where a photo goes: its own format beside it (or in the folder given), or the file named. A format
    that cannot be written here is, by default, PNG with one warning; named, a one-line error."""
    named = output is not None and not Path(output).is_dir()
    dst = media.resolve_output(src, output, cfg.overwrite)
    ext = dst.suffix.lower()
    if not media.is_image(dst):
        raise OutputError(f"output {dst} is a video file name but {src} is a photo; name a photo "
                          f"({', '.join(sorted(media.stills.FORMATS))})")
    why = media.stills.missing(ext)
    if why and named:
        raise OutputError(f"cannot write {ext} photos here: {why}; write .png or .jpg instead")
    if not named and ext != src.suffix.lower().replace(".jpeg", ".jpg"):
        notes.append(f"{src.suffix.lower()} written as {ext}: {media.stills.missing(src.suffix)}")
    return dst


def _chroma(cfg: Config, cc) -> str:
    """The chroma format the output will have: the input's where the CPU path keeps its planes (``planar``),
    4:4:4 at odd sizes, else 4:2:0."""
    sx, sy, _ = PLANAR.get(cc.pix_fmt or "", (1, 1, 1))
    if use_gpu(cfg, False) or cc.width % (1 << sx) or cc.height % (1 << sy):
        sx = sy = 0 if cc.width % 2 or cc.height % 2 else 1
    return {(1, 1): "4:2:0", (1, 0): "4:2:2"}.get((sx, sy), "4:4:4")


def _codec(cfg: Config, container, stream, dst: Path, notes: list[str], convert_audio: bool) -> dict:
    """The codec and crf for ``dst``, every copied stream checked against its container: a mismatch
    is a one-line error here, before anything is decoded or written (audio that ``convert_audio``
    lets be converted, e.g. AAC into a WebM the user named, is no mismatch)."""
    ext = dst.suffix.lower()
    cc = stream.codec_context
    ten_bit = bit_depth(cc.pix_fmt) > 8
    codec, note = choose_codec(cfg.codec, ext, media.files.muxer_codecs(ext), ten_bit,
                               media.container.is_hdr(stream), _chroma(cfg, cc))
    if note:
        notes.append(note)
    stray = media.container.unfit(container, ext, convert_audio)
    if stray:
        hint = ""
        if ext == ".webm":
            hint = (" (WebM holds only WebVTT subtitles)" if stray.startswith("subtitle") else
                    " (WebM holds only Opus/Vorbis audio; this FFmpeg has no libopus to convert it)"
                    if convert_audio else " (WebM holds only Opus/Vorbis audio)")
        raise OutputError(f"{stray} cannot be stored in {ext}{hint}; write .mkv instead, which keeps it as it is")
    crf = cfg.crf if cfg.crf is not None else CODECS[codec].crf
    check_crf(codec, crf)  # a crf given before the codec was settled (e.g. 60, then H.264 chosen)
    return {"codec": codec, "crf": crf}
