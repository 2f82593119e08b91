"""``trt_anon.process``: one file in, one anonymized file out, a Report back."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import av

from . import cuda, media, stages
from .config import CRFS, Config, check_crf
from .decode import PyAVDecoder
from .decode.pyav import bit_depth
from .detect import select_detector
from .encode import choose_codec
from .errors import AnonError, BackendError, OutputError
from .pipeline import Stages, run
from .redact import select_redactor
from .report import Report


def process(input: str | os.PathLike, output: str | os.PathLike | None = None, *,
            config: Config | None = None, progress: Any = None, review: bool | str | os.PathLike | None = None,
            review_originals: bool = False, **options) -> Report:
    """Anonymize ``input`` into ``output`` (default ``NAME.anon.EXT`` beside it).

    Options are the fields of :class:`Config` (``target``, ``threshold``, ``det_size``, ...).
    Nothing is written at ``output`` unless the whole video was processed; the input is only read.
    ``progress`` may be a tqdm-like object (``.update(n)``, ``.total``) to advance per frame.
    ``review`` (True: ``NAME.anon.review.html`` beside the output; or a file or folder path) writes a page to
    check the result before publishing (needs ``[review]``); ``review_originals`` adds the unredacted input
    frames to it. A review that fails after the video is written is a warning, not an error: the video is whole.
    Review and originals are arguments here, not Config fields, because the page is per file, like ``output``.
    """
    if review_originals and not review:
        review = True
    if review:
        from .review import require
        require()
    cfg = config if config is not None else Config.from_options(**options)
    if config is not None and options:
        cfg = Config.from_options(**{**_fields(config), **options})
    src = Path(input)
    started = time.perf_counter()
    notes: list[str] = []
    for attempt in _attempts(cfg):
        try:
            report, finish = _process(src, output, attempt, progress, notes, started, review, review_originals)
        except Exception as exc:
            if not cuda.is_out_of_memory(exc):
                raise
            notes.append(f"out of GPU memory at batch {attempt.batch_for(gpu=True)} on backend {attempt.backend}; "
                         "retried")
            if progress is not None:
                progress.reset()
        else:
            if finish is not None:
                finish()
            return report
        # out of the except block: the exception's traceback (and the batches it kept alive) is gone
        cuda.free_memory()
    raise BackendError("out of GPU memory even with a smaller batch; try --backend cpu")


def _attempts(cfg: Config):
    """The run as asked; after a GPU out-of-memory error, a quarter of the batch, then the CPU."""
    yield cfg
    gpu_batch = cfg.batch_for(gpu=True)  # only a GPU run runs out of GPU memory
    if cfg.backend != "cpu" and gpu_batch > 4:
        yield dataclasses.replace(cfg, batch_size=max(4, gpu_batch // 4))
    if cfg.backend == "auto":
        yield dataclasses.replace(cfg, backend="cpu")


def _fields(config: Config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _process(src: Path, output, cfg: Config, progress, notes: list[str], started: float, review=None,
             originals=False):
    """Write the video (or photo); return its report and what is left to do once the report is complete (the review)."""
    photo = media.stills.open_still(src) if media.is_image(src) else None
    container = None if photo else media.open_input(src)
    try:
        if photo is not None:
            dst = _photo_output(src, output, cfg, notes)
        else:
            dst = media.resolve_output(src, output, cfg.overwrite, lambda ext: media.container.fits(container, ext))
            if media.is_image(dst):
                raise OutputError(f"output {dst} is an image file name but {src} is a video")
        # a container the user named gets the audio it needs (WebM: Opus), as with ffmpeg; ours copies it
        convert_audio = output is not None and not Path(output).is_dir()
        if photo is None:
            cfg = _settle_codec(cfg, container, dst, notes, convert_audio)
        page, stats = None, None
        if review:
            from .review import FrameStats, review_path
            page = media.resolve_output(src, review_path(review, dst), cfg.overwrite)
            stats = FrameStats()
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(media.atomic_output(dst, cfg.overwrite))
            json_out = None
            if cfg.json_path:
                json_path = Path(cfg.json_path)
                if json_path.is_dir():
                    json_path = json_path / f"{src.stem}.anon.json"
                json_dst = media.resolve_output(src, json_path, cfg.overwrite)
                json_tmp = stack.enter_context(media.atomic_output(json_dst, cfg.overwrite))
                json_out = stack.enter_context(open(json_tmp, "w", encoding="utf-8"))
                json_out.write('{"frames": [\n')
            report = Report(str(src), str(dst))
            if photo is not None:
                _encode_photo(photo, tmp, dst, cfg, report, json_out, progress, stats)
            else:
                _encode_file(src, container, tmp, dst, cfg, report, json_out, progress, notes, stats, convert_audio)
            # the report is complete here, so the JSON holds what the caller gets
            report.warnings[:0] = notes
            report.wall = time.perf_counter() - started
            if json_out is not None:
                json_out.write('],\n"report": ' + json.dumps(report.to_dict()) + "}\n")
        finish = None
        if page is not None:
            finish = functools.partial(_write_review, report, stats, page, cfg, originals)
        return report, finish
    except OSError as exc:  # disk full, folder removed under us, ...
        raise OutputError(f"writing {output or 'the output'} failed: {exc.strerror or exc}") from None
    finally:
        if container is not None:
            container.close()


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


def _encode_photo(photo, tmp: Path, dst: Path, cfg: Config, report: Report, json_out, progress, stats=None) -> None:
    """A photo through the same stages as a video's frames (one batch of one), on the CPU: decoded and written
    with Pillow, seen upright by the detector."""
    if progress is not None:
        progress.total = 1
        progress.refresh()
    cfg = stages.with_batch(cfg, image=True)
    setup = time.perf_counter()
    detector, redactor = select_detector(cfg, gpu=False), select_redactor(cfg, gpu=False)
    report.seconds["setup"] = time.perf_counter() - setup
    writer = media.stills.StillWriter(photo, tmp, dst.suffix, cfg.keep_metadata)
    report.backends = {"decode": "pillow", "detect": detector.name, "redact": redactor.name, "encode": writer.name}
    report.warnings.extend(photo.changes(dst.suffix))
    run(Stages(photo.batches(), detector, redactor, writer), cfg, report, photo.rotation, json_out, progress, stats)


def _settle_codec(cfg: Config, container, dst: Path, notes: list[str], convert_audio: bool = False) -> Config:
    """The codec and crf for ``dst``, every copied stream checked against its container: a mismatch
    is a one-line error here, before anything is decoded or written (audio that ``convert_audio``
    lets be converted, e.g. AAC into a WebM the user named, is no mismatch)."""
    ext = dst.suffix.lower()
    stream = media.container.video_stream(container)
    deep = bit_depth(stream.codec_context.pix_fmt) > 8
    hdr = media.container.is_hdr(stream)
    codec, note = choose_codec(cfg.codec, ext, media.files.muxer_codecs(ext), deep, hdr)
    if note and note not in notes:
        notes.append(note)
    stray = media.container.unfit(container, ext, convert_audio)
    if stray:
        hint = ""
        if ext == ".webm":
            hint = (" (WebM holds only WebVTT subtitles)" if stray.startswith("subtitle") else
                    " (WebM holds only Opus/Vorbis audio; this FFmpeg has no libopus to convert it)"
                    if convert_audio else " (WebM holds only Opus/Vorbis audio)")
        raise OutputError(f"{stray} cannot be stored in {ext}{hint}; write .mkv instead, which keeps it as it is")
    crf = cfg.crf if cfg.crf is not None else CRFS[codec]
    check_crf(codec, crf)  # a crf given before the codec was settled (e.g. 60, then H.264 chosen)
    return dataclasses.replace(cfg, codec=codec, crf=crf)


def _encode_file(src: Path, container, tmp: Path, dst: Path, cfg: Config, report: Report, json_out,
                 progress, notes: list[str], stats=None, convert_audio: bool = False) -> None:
    stream = media.container.video_stream(container)
    info = media.VideoInfo.of(container, stream)
    if progress is not None and info.frames:
        progress.total = info.frames
        progress.refresh()
    cfg = stages.with_batch(cfg, info.is_image, info.width * info.height)
    cpu_decoder = PyAVDecoder(container, cfg.batch_size)
    chosen = stages.choose(src, cpu_decoder, info, cfg, notes)
    decoder, detector, redactor, gpu, info = chosen.decoder, chosen.detector, chosen.redactor, chosen.gpu, chosen.info
    rotation, colorspace = cpu_decoder.rotation, cpu_decoder.colorspace
    decoder_name = chosen.decoder_name
    report.seconds["setup"] = chosen.setup  # a TensorRT engine build lands here, not in fps

    try:
        # the muxer the codec was chosen for (FFmpeg's guess for .m4v, "ipod", holds H.264 only)
        out = av.open(str(tmp), mode="w", format=media.files.MUXERS[dst.suffix.lower()],
                      options=media.container.muxer_options(dst, cpu_decoder.time_base))
    except (av.error.FFmpegError, ValueError) as exc:
        raise OutputError(f"cannot write {dst}: {exc}") from None
    remuxer = replay = None
    try:
        encoder = stages.select_encoder(out, info, cpu_decoder, colorspace, cfg, gpu, notes)
        replay = None if gpu else stages.replay_decoder(src, cpu_decoder, info, cfg)
        remuxer = dress_output(src, container, stream, out, encoder, cfg, rotation, report, convert_audio)
        report.backends = {"decode": decoder_name, "detect": detector.name, "redact": redactor.name,
                           "encode": encoder.name}
        if cpu_decoder.deep and "10" not in encoder.pix_fmt:
            report.warnings.append(f"{info.pix_fmt} input written as 8-bit (the GPU path is 8-bit)")

        chain = Stages(decoder, detector, redactor, encoder, remuxer, replay and replay.frames())
        run(chain, cfg, report, rotation, json_out, progress, stats)
        if remuxer is not None:
            report.warnings.extend(remuxer.warnings())
        errors = cpu_decoder.errors + getattr(decoder, "errors", 0)
        report.decode_errors = errors
        if errors:
            report.warnings.append(f"{errors} damaged packet(s) skipped; their frames are not in the output")
        if stream.frames and report.frames + errors < stream.frames - 1:
            report.warnings.append(f"the header lists {stream.frames} frames but only {report.frames} "
                                   "decoded (truncated file?); all decoded frames were anonymized")
        if cpu_decoder.read_error:
            report.warnings.append(f"reading stopped after frame {report.frames} ({cpu_decoder.read_error}; damaged "
                                   "file?): the rest of the file is not in the output")
        if cpu_decoder.resized:
            index, (w, h) = cpu_decoder.first_resize
            report.warnings.append(f"the frame size changes at frame {index} ({info.width}x{info.height} -> {w}x{h}); "
                                   f"{cpu_decoder.resized} frame(s) scaled to {info.width}x{info.height}")
        if encoder.fixed_pts:
            report.warnings.append(f"{encoder.fixed_pts} non-increasing timestamp(s) moved forward by one tick")
        if encoder.grid_note():
            report.warnings.append(encoder.grid_note())
    except AnonError:
        raise
    except av.error.FFmpegError as exc:
        raise OutputError(f"writing {dst} failed: {exc}") from None
    finally:
        if remuxer is not None:
            remuxer.close()
        if replay is not None:
            replay.container.close()
        try:
            out.close()
        except av.error.FFmpegError as exc:
            raise OutputError(f"finishing {dst} failed: {exc}") from None


def dress_output(src: Path, container, stream, out, encoder, cfg: Config, rotation: int, report: Report,
                 convert_audio: bool = False):
    """File-level work around the video stream, shared by process() and the Ray segment join: clean
    container/stream metadata, chapters, the video's dispositions, colour tags and HDR metadata, display
    rotation, and the audio/subtitle copier (returned; ``convert_audio``: it converts audio a container the
    user named cannot hold, see media.Remuxer)."""
    out.metadata.update(media.clean_metadata(container.metadata, cfg.keep_metadata))
    chapters = media.container.chapters(container, cfg.keep_metadata)
    if out.format.name in media.container.CHAPTER_MUXERS:
        out.set_chapters(chapters)
    elif chapters:
        report.warnings.append(f"{len(chapters)} chapter(s) dropped: {out.format.name.upper()} cannot hold "
                               "chapters (.mkv and .mp4 can)")
    in_cc = stream.codec_context
    hdr = media.container.hdr_metadata(src, stream.index)
    if encoder is not None:
        encoder.set_colour(in_cc.color_primaries, in_cc.color_trc)
        note = encoder.carry_hdr(hdr)
        if note:
            report.warnings.append(note)
        vstream = encoder.stream
    else:  # the join: a stream copied from a segment's template (whose encoder carried the HDR metadata)
        vstream = out.streams.video[0]
    if hdr.dolby_vision:
        report.warnings.append("Dolby Vision layer dropped: its metadata describes the original pixels and "
                               "cannot be re-made; players show the base layer (HDR10, HLG or SDR) instead")
    vstream.metadata.update(media.container.stream_tags(stream, cfg.keep_metadata))
    vstream.disposition = stream.disposition
    if rotation:
        vstream.set_display_rotation(rotation)
    remuxer = media.Remuxer(src, out, cfg.keep_metadata, stream.index, convert_audio)
    report.warnings.extend(remuxer.dropped)
    return remuxer


def _write_review(report: Report, stats, page: Path, cfg: Config, originals: bool) -> None:
    """The review page, once the video is in place. A failure here leaves no page (it is written to a
    temporary file and renamed) and becomes a warning: the video is complete and correct either way."""
    from .review import write_review
    threshold = cfg.threshold_for("int8" if "int8" in report.backends.get("detect", "") else "fp32")
    settings = {"target": cfg.target, "threshold": f"{threshold:g}", "ttl": cfg.ttl, "style": cfg.style,
                "mosaic cell": cfg.mosaic_cell, "det size": cfg.det_size, "codec": cfg.codec, "crf": cfg.crf}
    try:
        write_review(report, stats, page, originals=originals, overwrite=cfg.overwrite, threshold=threshold,
                     settings={k: str(v) for k, v in settings.items()})
        report.review = str(page)
    except Exception as exc:  # the video is whole: say what went wrong, keep it
        report.warnings.append(f"review page not written ({type(exc).__name__}: {exc}); the video itself is complete")

