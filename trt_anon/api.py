"""``trt_anon.process``: one file in, one anonymized file out, a Report back."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import av

from . import media
from .config import Config
from .decode import PyAVDecoder
from .detect import select_detector
from .encode import PyAVEncoder
from .errors import AnonError, InputError, OutputError
from .pipeline import Stages, run
from .redact import select_redactor
from .report import Report


def process(input: str | os.PathLike, output: str | os.PathLike | None = None, *,
            config: Config | None = None, progress: Any = None, **options) -> Report:
    """Anonymize ``input`` into ``output`` (default ``NAME.anon.EXT`` beside it).

    Options are the fields of :class:`Config` (``target``, ``threshold``, ``det_size``, ...).
    Nothing is written at ``output`` unless the whole video was processed; the input is only read.
    ``progress`` may be a tqdm-like object (``.update(n)``, ``.total``) to advance per frame.
    """
    cfg = config if config is not None else Config.from_options(**options)
    if config is not None and options:
        cfg = Config.from_options(**{**_fields(config), **options})
    src = Path(input)
    started = time.perf_counter()
    container = media.open_input(src)
    try:
        dst = media.resolve_output(src, output, cfg.overwrite, lambda ext: media.container.fits(container, ext))
        detector = select_detector(cfg)
        redactor = select_redactor(cfg)
        report = Report(str(src), str(dst))
        report.backends = {"decode": "pyav", "detect": detector.name, "redact": redactor.name}
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(media.atomic_output(dst, cfg.overwrite))
            json_out = None
            if cfg.json_path:
                json_dst = media.resolve_output(src, cfg.json_path, cfg.overwrite)
                json_tmp = stack.enter_context(media.atomic_output(json_dst, cfg.overwrite))
                json_out = stack.enter_context(open(json_tmp, "w", encoding="utf-8"))
                json_out.write('{"frames": [\n')
            _encode_file(src, container, tmp, dst, cfg, report, detector, redactor, json_out, progress)
            report.wall = time.perf_counter() - started
            if json_out is not None:
                import json
                json_out.write('],\n"report": ' + json.dumps(report.to_dict()) + "}\n")
        return report
    except OSError as exc:  # disk full, folder removed under us, ...
        raise OutputError(f"writing {output or 'the output'} failed: {exc.strerror or exc}") from None
    finally:
        container.close()


def _fields(config: Config) -> dict:
    import dataclasses
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _encode_file(src: Path, container, tmp: Path, dst: Path, cfg: Config, report: Report, detector, redactor,
                 json_out, progress) -> None:
    info = media.VideoInfo.of(container, media.container.video_stream(container))
    if progress is not None and info.frames:
        progress.total = info.frames
        progress.refresh()
    decoder = PyAVDecoder(container, cfg.batch_size)
    image_ext = dst.suffix.lower() if media.is_image(dst) else None
    if image_ext and not info.is_image:
        raise OutputError(f"output {dst} is an image file name but {src} is a video")
    fmt = "image2" if image_ext else None
    try:
        out = av.open(str(tmp), mode="w", format=fmt)
    except (av.error.FFmpegError, ValueError) as exc:
        raise OutputError(f"cannot write {dst}: {exc}") from None
    remuxer = None
    try:
        out.metadata.update(media.clean_metadata(container.metadata, cfg.keep_metadata))
        # The first frame tells the colour matrix/range and rotation; peek it before the encoder exists.
        batches = iter(decoder)
        first = next(batches, None)
        if first is None:
            raise InputError(f"{src}: no frame could be decoded")
        in_cc = decoder.stream.codec_context
        rate = info.rate if not image_ext else 1
        encoder = PyAVEncoder(out, info.width, info.height, rate, decoder.time_base, decoder.colorspace,
                              cfg.crf, cfg.preset, image_ext=image_ext)
        if not image_ext:
            encoder.set_colour(in_cc.color_primaries, in_cc.color_trc)
            encoder.stream.metadata.update(media.clean_metadata(decoder.stream.metadata, cfg.keep_metadata))
            if decoder.rotation:
                encoder.stream.set_display_rotation(decoder.rotation)
            remuxer = media.Remuxer(src, out, cfg.keep_metadata, decoder.stream.index)
            report.warnings.extend(remuxer.dropped)
        report.backends["encode"] = encoder.name
        if info.pix_fmt and ("10" in info.pix_fmt or "12" in info.pix_fmt):
            report.warnings.append(f"{info.pix_fmt} input written as 8-bit {encoder.pix_fmt}")

        def all_batches():
            yield first
            yield from batches

        stages = Stages(all_batches(), detector, redactor, encoder, remuxer)
        run(stages, cfg, report, info.width, info.height, decoder.rotation, json_out, progress)
        report.decode_errors = decoder.errors
        if decoder.stream.frames and report.frames + decoder.errors < decoder.stream.frames - 1 and not image_ext:
            report.warnings.append(f"the header lists {decoder.stream.frames} frames but only {report.frames} "
                                   "decoded (truncated file?); all decoded frames were anonymized")
        if decoder.errors:
            report.warnings.append(f"{decoder.errors} damaged packet(s) skipped; their frames are not in the output")
        if encoder.fixed_pts:
            report.warnings.append(f"{encoder.fixed_pts} non-increasing timestamp(s) moved forward by one tick")
    except AnonError:
        raise
    except av.error.FFmpegError as exc:
        raise OutputError(f"writing {dst} failed: {exc}") from None
    finally:
        if remuxer is not None:
            remuxer.close()
        try:
            out.close()
        except av.error.FFmpegError as exc:
            raise OutputError(f"finishing {dst} failed: {exc}") from None
