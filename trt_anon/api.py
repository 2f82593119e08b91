"""``trt_anon.process``: one file in, one anonymized file out, a Report back; ``execute`` runs a ``Plan``."""
from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path
from typing import Any

import av

from . import audit, cuda, media, stages
from .config import Config
from .decode import PyAVDecoder
from .detect import select_detector
from .errors import AnonError, BackendError, OutputError, Terminated
from .pipeline import Stages, run
from .plan import Plan, fallbacks, plan
from .redact import select_redactor
from .report import BoxLog, Report
from .sink import VideoFile


def process(input: str | os.PathLike, output: str | os.PathLike | None = None, *,
            config: Config | None = None, progress: Any = None, review: bool | str | os.PathLike | None = None,
            review_originals: bool = False, **options) -> Report:
    """Anonymize ``input`` into ``output`` (default ``NAME.anon.EXT`` beside it).

    Options are the fields of :class:`Config` (``target``, ``threshold``, ``det_size``, ...).
    Nothing is written at ``output`` unless the whole video was processed; the input is only read.
    ``progress``: True for a progress bar on stderr, or a tqdm-like object (``.update(n)``, ``.total``) to advance
    per frame; None or False for none.
    ``review`` (True: ``NAME.anon.review.html`` beside the output; or a file or folder path) writes a page to
    check the result before publishing (needs ``[review]``); ``review_originals`` adds the unredacted input
    frames to it. A review that fails after the video is written is a warning, not an error: the video is whole.
    Review and originals are arguments here, not Config fields, because the page is per file, like ``output``.
    """
    if review_originals and not review:
        review = True
    cfg = Config.from_options(config, **options) if options or config is None else config
    job = plan(input, output, cfg, review=review, originals=review_originals)
    if progress is True:  # as live.stream() and process_many() take it
        from tqdm import tqdm
        with tqdm(desc=Path(input).name[:40], unit="frame", dynamic_ncols=True) as bar:
            return execute(job, bar)
    return execute(job, None if progress is False else progress)  # (a tqdm bar has no truth value)


def execute(job: Plan, progress: Any = None) -> Report:
    """Run a plan: its output (and JSON) written whole, or nothing. After the GPU ran out of memory, again
    with a quarter of the batch, then on the CPU (``plan.fallbacks``), each said in the report."""
    started = time.perf_counter()
    retried: list[str] = []
    for attempt in itertools.chain([job], fallbacks(job)):
        try:
            report, stats = _execute(attempt, progress, started, retried)
        except Exception as exc:
            if not cuda.is_out_of_memory(exc):
                raise
            retried.append(f"out of GPU memory at batch {attempt.config.batch_size} on backend "
                           f"{attempt.config.backend}; retried")
            if progress is not None:
                progress.reset()
        else:
            if attempt.review is not None:
                _write_review(report, stats, attempt)
            return report
        # out of the except block: the exception's traceback (and the batches it kept alive) is gone
        cuda.free_memory()
    raise BackendError("out of GPU memory even with a smaller batch; try --backend cpu")


def _execute(job: Plan, progress, started: float, retried: list[str]):
    """One attempt at ``job``: the report and, for the review page, the per-frame stats."""
    notes = list(retried)  # why a stage is not the first choice: the report's first warnings, after the plan's
    stats = None
    kept, added = (job.decisions.keep, job.decisions.regions()) if job.decisions else ((), None)
    if job.review is not None:
        from .review import FrameStats
        stats = FrameStats(keep=kept, added=added)
    report = Report(str(job.source), str(job.output))
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(media.atomic_output(job.output, job.config.overwrite))
            log = None
            if job.json is not None:
                json_tmp = stack.enter_context(media.atomic_output(job.json, job.config.overwrite))
                log = BoxLog(stack.enter_context(open(json_tmp, "w", encoding="utf-8")), keep=kept, added=added)
            (_photo if job.photo else _video)(job, tmp, report, log, progress, stats, notes)
            if job.config.sign:  # the file is whole: its Content Credentials go in before it is hashed and renamed
                from . import provenance
                provenance.sign(tmp, job, report)
            # the report is complete here, so the JSON holds what the caller gets
            report.warnings[:0] = [*job.notes, *notes]
            report.wall = time.perf_counter() - started
            if log is not None or stats is not None:  # with the audit record: the output is whole, still under
                record = audit.record(job.source, job.output, tmp, job.config, report, job.decisions)  # its tmp name
                for doc in (log, stats):
                    if doc is not None:
                        doc.close(report, record)
        return report, stats
    except OSError as exc:  # disk full, folder removed under us, ...
        raise OutputError(f"writing {job.output} failed: {exc.strerror or exc}") from None


def _photo(job: Plan, tmp: Path, report: Report, log, progress, stats, notes: list[str]) -> None:
    """A photo through the same stages as a video's frames (one batch of one), on the CPU: decoded and written
    with Pillow, seen upright by the detector."""
    cfg, ext = job.config, job.output.suffix
    photo = media.stills.open_still(job.source)
    if progress is not None:
        progress.total = 1
        progress.refresh()
    setup = time.perf_counter()
    detector, redactor = select_detector(cfg, gpu=False), select_redactor(cfg, gpu=False)
    report.seconds["setup"] = time.perf_counter() - setup
    writer = media.stills.StillWriter(photo, tmp, ext, cfg.keep_metadata)
    report.backends = {"decode": "pillow", "detect": detector.name, "redact": redactor.name, "encode": writer.name}
    report.warnings.extend(photo.changes(ext))
    run(Stages(photo.batches(), detector, redactor, writer), cfg, report, photo.rotation, log, progress, stats,
        decisions=job.decisions)


def _video(job: Plan, tmp: Path, report: Report, log, progress, stats, notes: list[str]) -> None:
    """Decode, detect, redact and encode the video into ``tmp``, the other streams copied beside it."""
    src, cfg = job.source, job.config
    container = media.open_input(src)
    sink = replay = None
    try:
        stream = media.container.video_stream(container)
        info = media.VideoInfo.of(container, stream)
        if progress is not None and info.frames:
            progress.total = info.frames
            progress.refresh()
        source = PyAVDecoder(container, cfg.batch_size, stages.planar_formats(cfg, info))
        chosen = stages.choose(src, source, info, cfg, notes)
        report.seconds["setup"] = chosen.setup  # a TensorRT engine build lands here, not in fps
        sink = VideoFile(tmp, job, container, source, chosen.info, chosen.gpu, report, notes)
        replay = None if chosen.gpu else stages.replay_decoder(src, source, chosen.info, cfg)
        report.backends = {"decode": chosen.decoder_name,
                           "detect": "none: decisions file" if job.decisions else chosen.detector.name,
                           "redact": chosen.redactor.name, "encode": sink.name}
        if source.deep and "10" not in sink.encoder.pix_fmt:
            report.warnings.append(f"{info.pix_fmt} input written as 8-bit (the GPU path is 8-bit)")

        run(Stages(chosen.decoder, chosen.detector, chosen.redactor, sink, replay and replay.frames(), source.layout),
            cfg, report, source.rotation, log, progress, stats, decisions=job.decisions)
        report.warnings.extend(sink.remuxer.warnings())
        errors = source.errors + getattr(chosen.decoder, "errors", 0)
        report.decode_errors = errors
        if errors:
            report.warnings.append(f"{errors} damaged packet(s) skipped; their frames are not in the output")
        if stream.frames and report.frames + errors < stream.frames - 1:
            report.warnings.append(f"the header lists {stream.frames} frames but only {report.frames} "
                                   "decoded (truncated file?); all decoded frames were anonymized")
        if source.read_error:
            report.warnings.append(f"reading stopped after frame {report.frames} ({source.read_error}; damaged "
                                   "file?): the rest of the file is not in the output")
        if source.resized:
            index, (w, h) = source.first_resize
            report.warnings.append(f"the frame size changes at frame {index} ({info.width}x{info.height} -> {w}x{h}); "
                                   f"{source.resized} frame(s) scaled to {info.width}x{info.height}")
        if sink.encoder.fixed_pts:
            report.warnings.append(f"{sink.encoder.fixed_pts} non-increasing timestamp(s) moved forward by one tick")
        if sink.encoder.grid_note():
            report.warnings.append(sink.encoder.grid_note())
    except AnonError:
        raise
    except av.error.FFmpegError as exc:
        raise OutputError(f"writing {job.output} failed: {exc}") from None
    finally:
        if replay is not None:
            replay.container.close()
        try:
            if sink is not None:
                sink.finish()
        finally:
            container.close()


def _write_review(report: Report, stats, job: Plan) -> None:
    """The review page, once the video is in place. A failure here leaves no page (it is written to a
    temporary file and renamed) and becomes a warning: the video is complete and correct either way."""
    from .review import write_review
    cfg, page = job.config, job.review
    if job.decisions is None:
        threshold = cfg.threshold_for("int8" if "int8" in report.backends.get("detect", "") else "fp32")
        found = {"threshold": f"{threshold:g}", "ttl": cfg.ttl, "det size": cfg.det_size}
    else:  # nothing detected or tracked here: no threshold, ttl or detection size of this run applies
        threshold = None
        found = {"faces": f"from {job.decisions.path.name} (nothing detected)"}
    settings = {"target": cfg.target, **found, "style": cfg.style, "mosaic cell": cfg.mosaic_cell, "codec": cfg.codec,
                "crf": cfg.crf}
    try:
        write_review(report, stats, page, originals=job.originals, overwrite=cfg.overwrite, threshold=threshold,
                     settings={k: str(v) for k, v in settings.items()})
        report.review = str(page)
    except Exception as exc:  # the video is whole: say what went wrong, keep it
        report.warnings.append(f"review page not written ({type(exc).__name__}: {exc}); the video itself is complete")
    except (KeyboardInterrupt, Terminated) as exc:  # stopped with the video (and JSON) whole and in place: the
        exc.kept = [str(p) for p in (job.output, job.json) if p is not None]  # caller says they were kept
        raise

