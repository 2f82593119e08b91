"""``trt-anon``: anonymize faces in video files and folders, with a progress bar per file."""
from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from . import __version__
from .config import Config
from .errors import AnonError, ConfigError, InputError, OutputError, Terminated
from .media.files import IMAGE_EXTS

VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".wmv",
              ".flv", ".3gp", ".ogv"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="trt-anon", description="Anonymize faces (or eyes) in videos and images with a 25:1 mosaic. "
        "Writes NAME.anon.EXT beside each input unless -o says otherwise; never touches the input. "
        "trt-anon verify OUTPUT RECORD checks a file against the audit record in a run's --json file.")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video/image files or folders of them")
    p.add_argument("-o", "--output", metavar="PATH", help="output file (one input) or folder (created if needed)")
    p.add_argument("--demo", action="store_true",
                   help="run on the packaged sample clip, write demo.anon.mp4 here (replacing an earlier demo's)")
    for f in dataclasses.fields(Config):  # every option of Config that is a command-line option (config.option)
        if "help" in f.metadata:
            cli = dict(f.metadata)
            flag = cli.pop("flag", "--" + f.name.replace("_", "-"))
            if f.default is False:
                p.add_argument(flag, dest=f.name, action="store_true", **cli)
            else:
                p.add_argument(flag, dest=f.name, default=f.default, **cli)
    p.add_argument("--review", nargs="?", const=True, metavar="PATH",
                   help="write a page to check the result before publishing: NAME.anon.review.html beside the "
                        "output, or PATH (a folder when there are several inputs, with an index.html); "
                        "needs matplotlib: pip install 'trt_anon[review]'")
    p.add_argument("--review-originals", action="store_true",
                   help="put the unredacted input frame beside each output frame on the review page (the page "
                        "then shows faces: never publish it); implies --review")
    live = p.add_argument_group("live streams (an rtsp://, srt://, tcp://, udp://, http(s):// URL or /dev/video*)")
    live.add_argument("--live", action="store_true",
                      help="treat the input as a live stream (a file is read at its own frame rate, as a camera)")
    live.add_argument("--latency", type=float, default=0.5, metavar="SECONDS",
                      help="the most delay a frame may have (default 0.5): the back-fill window and the queue are "
                           "sized to it; frames that would be later are dropped or covered, never written raw")
    live.add_argument("--on-overload", choices=("drop", "cover"), default="drop",
                      help="frames the machine cannot process in time: drop them (default) or write them covered")
    live.add_argument("--reconnect", type=int, default=5, metavar="N",
                      help="times a network source that drops is reopened, backing off 1, 2, 4, 8 s (default 5; "
                           "0: the stream ends with it)")
    live.add_argument("--record", metavar="PATH", help="also write a recording (.mkv, .mp4, .ts) beside -o (a stream "
                      "to a server, say): the same frames, encoded a second time")
    live.add_argument("--input-format", metavar="FMT", help="FFmpeg input format, e.g. v4l2, mpegts")
    live.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                      help="FFmpeg input option, e.g. rtsp_transport=tcp, video_size=1280x720, rtsp_flags=listen")
    p.add_argument("--ray", nargs="?", const="local", metavar="auto|ADDRESS",
                   help="run on Ray: alone, a local instance on this machine (127.0.0.1 only); 'auto' or "
                        "HOST:PORT joins a running cluster (inputs and outputs on storage every node sees); "
                        "long videos are split into segments. Needs pip install 'trt_anon[ray]'")
    p.add_argument("--workers", type=int, metavar="N", help="with --ray: at most N files/segments at once")
    p.add_argument("--skip-existing", action="store_true",
                   help="with --ray: keep outputs finished from the same input and options (resume a job)")
    p.add_argument("--segment-frames", type=int, metavar="N",
                   help="with --ray: split long videos about every N frames at keyframes (0: never; "
                        "default: every worker busy, segments of at least 300 frames)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"trt-anon {__version__}")
    return p


def expand(inputs: list[str]) -> list[Path]:
    """Files as given; folders become their video/image files (sorted, our own outputs skipped)."""
    out: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS
                           and ".anon." not in p.name and not p.name.startswith("."))
            if not found:
                raise InputError(f"{path}: folder has no video or image files")
            out.extend(found)
        else:
            out.append(path)
    return out


def demo_clip() -> Path:
    return Path(str(resources.files("trt_anon") / "data" / "demo.mp4"))


def _terminate(signum, frame) -> None:
    raise Terminated()


def say(exc: AnonError) -> str:
    """The error as the command line says it: an option's own flag (--batch-size), never the API's name for it
    (batch_size), which Config's and process()'s messages begin with."""
    name, _, rest = str(exc).partition(" ")
    flags = {a.dest: a.option_strings[-1] for a in _parser()._actions if a.option_strings}
    return f"{flags[name]} {rest}" if name in flags and rest.startswith("must be") else str(exc)


def verify(argv: list[str]) -> int:
    """``trt-anon verify OUTPUT RECORD [--input INPUT]``: the files against a run's audit record (in its --json).
    Exit 0: they are the files it describes; 1: one differs; 2: nothing could be checked (no record, no file)."""
    from .audit import verify as check

    p = argparse.ArgumentParser(prog="trt-anon verify", description="Check a published file (and its source) "
                                "against the audit record in the --json file of the run that made it.")
    p.add_argument("output", help="the anonymized file")
    p.add_argument("record", help="the run's --json file")
    p.add_argument("--input", help="the original too (its SHA-256 is in the record)")
    args = p.parse_args(argv)
    try:
        problems = check(Path(args.output), Path(args.record), Path(args.input) if args.input else None)
    except AnonError as exc:  # nothing could be checked: not a mismatch
        print(f"trt-anon verify: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"trt-anon verify: MISMATCH: {problem}", file=sys.stderr)
    if problems:
        return 1
    files = f"{args.output} and {args.input} match" if args.input else f"{args.output} matches"
    print(f"OK: {files} the record in {args.record}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:  # a file named "verify" is ./verify
        return verify(argv[1:])
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(args)
    except KeyboardInterrupt:
        print("trt-anon: interrupted; no partial output left", file=sys.stderr)
        return 130
    except Terminated:
        print("trt-anon: terminated; no partial output left", file=sys.stderr)
        return 143


def _main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .api import process
    from .plan import files_at_once

    try:
        # every option named after a Config field is that field (--json is per file: set for each below)
        options = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                   if f.name != "json_path" and "help" in f.metadata}
        # the demo replaces its own output (and what it was asked to write beside it)
        options["overwrite"] = args.overwrite or (args.demo and args.output is None)
        config = Config(**options)
        if isinstance(args.review, str) and Path(args.review).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS:
            args.inputs.insert(0, args.review)  # `--review in.mp4`: argparse took the input for PATH
            args.review = True
        if args.demo:
            if args.inputs:
                raise ConfigError("--demo takes no inputs")
            inputs = [demo_clip()]
            output = args.output or "demo.anon.mp4"
        else:
            if not args.inputs:
                raise ConfigError("no input given; try: trt-anon VIDEO.mp4  (or trt-anon --demo)")
            from .live import is_live
            if args.live or any(is_live(i) for i in args.inputs):
                return _main_live(args, config)
            if args.record:
                raise ConfigError("--record is for live streams (a URL, /dev/video*, or --live)")
            inputs = expand(args.inputs)
            output = args.output
        review, index = _review_plan(args, inputs, output)
    except AnonError as exc:
        print(f"trt-anon: error: {say(exc)}", file=sys.stderr)
        return exc.exit_code

    if args.ray is not None:
        return _main_ray(args, config, inputs, output, review)
    if args.workers is not None or args.skip_existing or args.segment_frames is not None:
        print("trt-anon: error: --workers, --skip-existing and --segment-frames need --ray", file=sys.stderr)
        return ConfigError.exit_code
    many = len(inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)
    if output is not None and (many or str(output).endswith(("/", "\\"))):
        Path(output).mkdir(parents=True, exist_ok=True)  # a folder of outputs
    if many and args.json_path:
        Path(args.json_path).mkdir(parents=True, exist_ok=True)  # process() writes NAME.anon.json into a folder
    at_once = files_at_once(config, inputs)  # several at once on one GPU; one at a time on the CPU
    stop = threading.Event()

    def one(src: Path, slot: int | None) -> dict:
        bar = tqdm(desc=src.name[:40], unit="frame", disable=args.quiet, leave=False, dynamic_ncols=True,
                   delay=0.5, position=slot)  # no empty bar before a one-line error; the total is known by then
        try:
            report = process(src, output, config=config, json_path=args.json_path, review=review,
                             progress=bar if slot is None else _Stoppable(bar, stop),
                             review_originals=args.review_originals)
        except AnonError as exc:
            bar.close()
            print(f"trt-anon: error: {say(exc)}", file=sys.stderr)
            if args.debug:
                raise
            return {"name": src.name, "report": None, "error": say(exc)}
        except Exception as exc:  # a bug: still one line, and fail closed (process() cleaned up)
            bar.close()
            if args.debug:
                raise
            print(f"trt-anon: internal error on {src}: {type(exc).__name__}: {exc} (rerun with --debug)",
                  file=sys.stderr)
            return {"name": src.name, "report": None, "error": f"internal error: {type(exc).__name__}"}
        bar.close()
        if not args.quiet:
            print("\n".join([report.summary(), *(f"  warning: {w}" for w in report.warnings),
                             *([f"  review: {report.review}"] if report.review else [])]))
        elif review and not report.review:  # asked for, not written: say so even when quiet
            print(f"trt-anon: warning: {report.warnings[-1]}", file=sys.stderr)
        return {"name": src.name, "report": report, "page": report.review}

    rows = [one(src, None) for src in inputs] if at_once == 1 else _at_once(one, inputs, at_once, stop)
    failed = sum("error" in row for row in rows)
    if index is not None:
        _write_index(rows, index, args)
    if many and not args.quiet:
        print(f"{len(inputs) - failed} of {len(inputs)} files anonymized")
    return 1 if failed else 0


class _Stoppable:
    """A file's progress bar that ends its run (Terminated, its partial output removed) at the next batch once
    ``stop`` is set: files run at once run in threads, which Ctrl-C and SIGTERM do not reach."""

    def __init__(self, bar, stop: threading.Event) -> None:
        object.__setattr__(self, "bar", bar)
        object.__setattr__(self, "stop", stop)

    def update(self, n: int = 1) -> None:
        if self.stop.is_set():
            raise Terminated()
        self.bar.update(n)

    def __getattr__(self, name: str):
        return getattr(self.bar, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.bar, name, value)


def _at_once(one, inputs: list[Path], n: int, stop: threading.Event) -> list[dict]:
    """``one(src, slot)`` for every input, ``n`` at a time (each a progress-bar line of its own); the rows in input
    order. An interruption here stops the others at their next batch, and waits for them."""
    slots: queue.SimpleQueue = queue.SimpleQueue()
    for k in range(n):
        slots.put(k)

    def run(src: Path) -> dict:
        slot = slots.get()
        try:
            return one(src, slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(n, thread_name_prefix="trt_anon-file") as pool:
        futures = [pool.submit(run, src) for src in inputs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            stop.set()
            for f in futures:
                f.cancel()
            raise


def _main_live(args: argparse.Namespace, config: Config) -> int:
    """One live input into one output, until the stream ends or Ctrl-C; a status line, then the report."""
    from .live import is_live, parse_options, stream

    if len(args.inputs) != 1 or not args.output:
        raise ConfigError("a live stream takes one input and -o (a .mkv/.mp4/.ts file, a .m3u8 path, or an "
                          "rtsp://, srt://, tcp:// or udp:// URL)")
    report = stream(args.inputs[0], args.output, config, latency=args.latency, on_overload=args.on_overload,
                    input_format=args.input_format, input_options=parse_options(args.input_option),
                    paced=args.live and not is_live(args.inputs[0]), progress=not args.quiet,
                    log=lambda line: print(f"trt-anon: {line}", file=sys.stderr), retries=args.reconnect,
                    record=args.record)
    if not args.quiet:
        live = report.live
        print(f"{report.summary()}\n  delay p50 {live['delay_p50']} s, p99 {live['delay_p99']} s, max "
              f"{live['delay_max']} s; dropped {live['dropped']}, covered {live['covered']}, reconnects "
              f"{live['reconnects']}")
        for w in report.warnings:
            print(f"  warning: {w}")
    return 0


def _main_ray(args: argparse.Namespace, config: Config, inputs: list[Path], output, review) -> int:
    """Every input as Ray tasks (``trt_anon.scale``); one bar over all frames, then a summary. Exit 1 if any failed."""
    import dataclasses

    from .scale import process_many

    try:
        if review:
            raise ConfigError("--review is not available with --ray yet; run without --ray to get review pages")
        options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        options["json_path"] = args.json_path
        reports = process_many(inputs, output, ray_address=None if args.ray == "local" else args.ray,
                               workers=args.workers, skip_existing=args.skip_existing,
                               segment_frames=args.segment_frames, progress=not args.quiet, **options)
    except AnonError as exc:
        print(f"trt-anon: error: {say(exc)}", file=sys.stderr)
        return exc.exit_code
    failed = [r for r in reports if r.error]
    for r in failed:
        print(f"trt-anon: error: {r.error}", file=sys.stderr)
    if not args.quiet:
        for r in reports:
            if not r.error:
                print(r.summary())
                for w in r.warnings:
                    print(f"  warning: {w}")
    return 1 if failed else 0


def _review_plan(args: argparse.Namespace, inputs: list[Path], output) -> tuple[bool | str | None, Path | None]:
    """What to pass as process(review=...), and where the index goes (several inputs only). Refuses, before
    any work, a missing matplotlib, an .html PATH for several files and an index.html that exists."""
    review = args.review or (True if args.review_originals else None)
    if not review:
        return None, None
    from .review import require
    require()
    if len(inputs) < 2 and not any(Path(i).is_dir() for i in args.inputs):
        return review, None
    if isinstance(review, str):
        if review.lower().endswith((".html", ".htm")):
            raise ConfigError(f"--review {review}: with several inputs, name a folder (one page per file + index.html)")
        folder = Path(review)
        folder.mkdir(parents=True, exist_ok=True)
        review = f"{folder}{os.sep}"
    elif output is not None:
        folder = Path(output)
    else:  # outputs go beside their inputs
        folder = Path(os.path.commonpath([str(p.resolve().parent) for p in inputs]))
    index = folder / "index.html"
    if index.exists() and not args.overwrite:
        raise OutputError(f"{index} exists; pass --overwrite to replace it")
    return review, index


def _write_index(rows: list[dict], index: Path, args: argparse.Namespace) -> None:
    from .review import write_index
    try:
        write_index(rows, index, originals=args.review_originals, overwrite=args.overwrite)
    except (AnonError, OSError) as exc:  # the videos are written: a warning, like a failed page
        print(f"trt-anon: warning: review index not written: {exc}", file=sys.stderr)
        return
    if not args.quiet:
        print(f"review index: {index}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
