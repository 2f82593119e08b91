"""Where redacted frames go: an output video file, with everything around the video stream.

``VideoFile`` is what ``pipeline.run`` writes to (``encode``, ``close``): the encoder's stream in the
container the plan named, and the input's audio, subtitles, chapters and cleaned metadata copied in
step beside it. Photos go to ``media.stills.StillWriter``; a Ray segment's piece to its encoder alone.
"""
from __future__ import annotations

from pathlib import Path

import av

from . import media
from .config import Config
from .errors import OutputError
from .plan import Plan
from .report import Report
from .stages import select_encoder


class VideoFile:
    """The output file of ``plan``, written at ``path`` (a temporary name, renamed into place when whole).

    ``source`` is the PyAV decoder over the input (time base, colour matrix, rotation, bit depth), ``info``
    the video's size and rate, ``gpu`` whether the frames arrive on the GPU. Why the encoder is not the
    first choice goes into ``notes``; what is dropped or changed around the video, into ``report``."""

    def __init__(self, path: Path, plan: Plan, container, source, info, gpu: bool, report: Report,
                 notes: list[str]) -> None:
        dst = self.dst = plan.output
        stream = media.container.video_stream(container)
        try:
            # the muxer the codec was chosen for (FFmpeg's guess for .m4v, "ipod", holds H.264 only)
            self.out = av.open(str(path), mode="w", format=media.files.MUXERS[dst.suffix.lower()],
                               options=media.container.muxer_options(dst, source.time_base))
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"cannot write {dst}: {exc}") from None
        self.remuxer = None
        try:
            self.encoder = select_encoder(self.out, info, source, source.colorspace, plan.config, gpu, notes)
            self.remuxer = dress_output(plan.source, container, stream, self.out, self.encoder, plan.config,
                                        source.rotation, report, plan.convert_audio)
        except BaseException:
            self.finish()
            raise

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def last_pts(self) -> int | None:
        return self.encoder.last_pts

    def encode(self, frames, pts: list[int]) -> None:
        self.encoder.encode(frames, pts)
        self.remuxer.advance(self.encoder.packet_time)  # audio and subtitles up to the video written

    def close(self) -> None:
        """The encoder flushed, and the rest of the audio and subtitles."""
        self.encoder.close()
        self.remuxer.advance(None)

    def finish(self) -> None:
        """Close the files (after ``close``, or on an error)."""
        if self.remuxer is not None:
            self.remuxer.close()
        try:
            self.out.close()
        except av.error.FFmpegError as exc:
            raise OutputError(f"finishing {self.dst} failed: {exc}") from None


def dress_output(src: Path, container, stream, out, encoder, cfg: Config, rotation: int, report: Report,
                 convert_audio: bool = False):
    """File-level work around the video stream, for a whole run and for the join of Ray segments: clean
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
