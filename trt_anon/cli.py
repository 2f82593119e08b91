"""``trt-anon``: anonymize faces in video files and folders, with a progress bar per file."""
from __future__ import annotations

import argparse
import contextlib
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
from .media.files import IMAGE_EXTS, default_output

LIVE_DEFAULTS = {"latency": 0.5, "on_overload": "drop", "reconnect": 5}   # options of live streams only
VIDEO_EXTS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".wmv",
              ".flv", ".3gp", ".ogv"}


class Parser(argparse.ArgumentParser):
    """argparse with the one-line errors of the rest of the CLI: a bad choice or an unknown flag says what was
    wrong (the choices included) and where to look, not the whole usage block first."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class Repeated(argparse.Action):
    """An option given once per value (``--keep-face A --keep-face B``), collected into a tuple: argparse's own
    "append" appends to its default, which for a Config field is an immutable ``()``."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), values))


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="trt-anon", description="Anonymize faces (or eyes) in videos and images with a 25:1 mosaic. "
        "Writes NAME.anon.EXT beside each input unless -o says otherwise; never touches the input. "
        "trt-anon verify OUTPUT [RECORD] checks a file's Content Credentials (--sign) and/or the audit record in a "
        "run's --json file.")
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
            elif cli.get("action") == "append":  # repeated: a tuple, like the field's default
                p.add_argument(flag, dest=f.name, default=f.default, **{**cli, "action": Repeated})
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
    live.add_argument("--latency", type=float, default=LIVE_DEFAULTS["latency"], metavar="SECONDS",
                      help="the most delay a frame may have (default 0.5): each frame is written by then, with the "
                           "back-fill the time left allows; frames that would be later are dropped or covered, never "
                           "written raw")
    live.add_argument("--on-overload", choices=("drop", "cover"), default=LIVE_DEFAULTS["on_overload"],
                      help="frames the machine cannot process in time: drop them (default) or write them black (every "
                           "frame kept in place)")
    live.add_argument("--reconnect", type=int, default=LIVE_DEFAULTS["reconnect"], metavar="N",
                      help="times a network source that fails (an error, or no data for 10 s) is reopened, backing "
                           "off 1, 2, 4, 8 s (default 5; 0: the run ends with it); a stream its sender ends is over")
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
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no summary; warnings (a truncated input, say) and errors still go to "
                        "stderr")
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
    """``trt-anon verify OUTPUT [RECORD] [--input INPUT] [--trust ROOTS]``: the file's Content Credentials,
    validated and told, and the files against a run's audit record (in its --json). Exit 0: they check out;
    1: something differs or does not validate; 2: nothing could be checked (no record, no credentials, no file)."""
    from .audit import verify as check

    p = Parser(prog="trt-anon verify", description="Check a published file: its Content Credentials (written "
                                "with --sign; needs trt_anon[c2pa]) and, given the --json file of the run that "
                                "made it, the file (and its source) against that run's audit record.")
    p.add_argument("output", help="the anonymized file")
    p.add_argument("record", nargs="?", help="the run's --json file")
    p.add_argument("--input", help="the original too (its SHA-256 is in the record and the Content Credentials)")
    p.add_argument("--trust", metavar="ROOTS", help="PEM file of the root certificates to trust: the signer must "
                   "chain to one of them (without it, a valid signature is reported with its signer, untrusted)")
    args = p.parse_args(argv)
    out, src = Path(args.output), Path(args.input) if args.input else None
    problems: list[str] = []
    try:
        if not out.is_file():
            raise InputError(f"{out} is not a file")
        reading = _read_credentials(out, args, problems)
        if args.record:
            problems += [f"MISMATCH: {p}" for p in check(out, Path(args.record), src)]
        elif reading is None:
            raise InputError(f"{out} holds no Content Credentials; give the --json file of the run that made it "
                             "to check it against its audit record")
        elif src is not None and not reading.input_checked:
            raise InputError(f"the Content Credentials of {out} name no input by its SHA-256 to check {src} "
                             "against; give the --json file of the run that made it")
    except AnonError as exc:  # nothing could be checked: not a mismatch
        print(f"trt-anon verify: error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"trt-anon verify: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.record:
        files = f"{args.output} and {args.input} match" if args.input else f"{args.output} matches"
        _say(f"OK: {files} the record in {args.record}")
    return 0


def _read_credentials(out: Path, args, problems: list[str]):
    """The file's Content Credentials, told on stdout (their problems added to ``problems``); None when it has
    none, or when the C2PA library is not installed and a record is there to check instead."""
    try:
        from . import provenance
        reading = provenance.read(out, Path(args.trust) if args.trust else None,
                                  Path(args.input) if args.input else None)
    except ConfigError:  # the library is missing
        if args.record and not args.trust:
            return None
        raise
    if reading is None:
        if args.trust:
            raise InputError(f"{out} holds no Content Credentials to check against {args.trust}")
        return None
    if reading.problems:
        problems += [f"INVALID Content Credentials: {p}" for p in reading.problems]
        state = "do NOT validate"
    elif reading.state == "Trusted":
        state = f"valid and trusted (the signer chains to a root in {args.trust})"
    else:
        state = "valid: signature and hash binding check out; the signer is on no trust list given (--trust ROOTS)"
    _say(f"Content Credentials of {out}: {state}")
    for line in reading.claims:
        _say(f"  {line}")
    if reading.input_differs:  # the credentials hold; the file given is not the one they name
        problems.append(f"MISMATCH: {reading.input_differs}")
    return reading


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:  # a file named "verify" is ./verify
        return verify(argv[1:])
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    finished: list[str] = []  # outputs complete before a signal: they stay, and the last line says so
    try:
        return _main(args, finished)
    except (KeyboardInterrupt, Terminated) as exc:
        what, code = ("interrupted", 130) if isinstance(exc, KeyboardInterrupt) else ("terminated", 143)
        print(f"trt-anon: {what}; {_left(finished, exc)}", file=sys.stderr)
        return code


def _left(finished: list[str], exc: BaseException) -> str:
    """What a signal leaves: the files finished before it, whole (``kept``: the video of a run stopped while its
    review page was written, api._write_review), and never a partial one."""
    page = [str(p) for p in getattr(exc, "kept", ())]
    whole = finished + page
    if not whole:
        return "no partial output left"
    names = ", ".join(whole[:4]) + (f" and {len(whole) - 4} more" if len(whole) > 4 else "")
    unwritten = f" (the review page of {Path(page[0]).name} was not written)" if page else ""
    return f"kept the finished {names}{unwritten}; no partial output left"


def _main(args: argparse.Namespace, finished: list[str]) -> int:
    if args.sign:  # --sign takes CERT KEY, or one settings .json: argparse gave it the inputs after them too
        n = 1 if args.sign[0].lower().endswith(".json") else 2
        args.inputs, args.sign = args.inputs + args.sign[n:], args.sign[:n]
    try:
        # every option named after a Config field is that field (--json is per file: set for each below)
        options = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
                   if f.name != "json_path" and "help" in f.metadata}
        # the demo replaces its own output (and what it was asked to write beside it)
        options["overwrite"] = args.overwrite or (args.demo and args.output is None)
        config = Config(**options)
        if config.sign:  # the credentials once, before any file (each file's container is checked in its plan)
            from .provenance import accept
            accept(config.sign)
        if config.keep_faces:  # the reference photos read, and refused, once for every input
            from .consent import people
            people(config.keep_faces)
        if isinstance(args.review, str) and Path(args.review).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS:
            if not Path(args.review).exists():
                raise ConfigError(f"--review {args.review}: the review page is an .html file (or, with several "
                                  "inputs, a folder)")
            args.inputs.insert(0, args.review)  # `--review in.mp4`: argparse took the input for PATH
            args.review = True
        if args.ray not in (None, "local", "auto") and (Path(args.ray).exists() or
                                                        Path(args.ray).suffix.lower() in VIDEO_EXTS | IMAGE_EXTS):
            args.inputs.insert(0, args.ray)  # `--ray clips/`: argparse took the input for the address
            args.ray = "local"
        if args.demo:
            if args.inputs:
                raise ConfigError("--demo takes no inputs")
            _no_live_options(args)
            for flag, name in (("--json", args.json_path), ("--review", args.review)):
                if isinstance(name, str) and Path(name).is_file() and not args.overwrite:
                    raise OutputError(f"{flag} {name} exists; pass --overwrite to replace it (the demo replaces "
                                      "only its own demo.anon.mp4)")
            inputs = [demo_clip()]
            output = args.output or "demo.anon.mp4"
        else:
            if not args.inputs:
                raise ConfigError("no input given; try: trt-anon VIDEO.mp4  (or trt-anon --demo)")
            from .live import is_live
            if args.live or any(is_live(i) for i in args.inputs):
                if config.sign:
                    raise ConfigError("--sign is for files: a live stream's output is never whole to be signed")
                return _main_live(args, config)
            _no_live_options(args)
            inputs = expand(args.inputs)
            output = args.output
        if args.ray is None and (args.workers is not None or args.skip_existing or args.segment_frames is not None):
            raise ConfigError("--workers, --skip-existing and --segment-frames need --ray")
        many = len(inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)
        review, index, review_folder = _review_plan(args, inputs, output, many)
        folders = []  # created before any work, or none of them; with several inputs (or Ray) -o is a folder
        if output is not None and (many or args.ray is not None or str(output).endswith(("/", os.sep))):
            folders.append(("-o", str(output)))
        # process() writes NAME.anon.json into a folder
        if args.json_path and (many or args.ray is not None or str(args.json_path).endswith(("/", os.sep))):
            folders.append(("--json", args.json_path))
        if review_folder is not None:
            folders.append(("--review", review_folder))
        made = make_folders(folders, many)
        if many:
            try:
                clashes(inputs, output, dict(folders).get("--json"), review)
            except AnonError:
                remove_empty(made)
                raise
    except AnonError as exc:
        print(f"trt-anon: error: {say(exc)}", file=sys.stderr)
        return exc.exit_code

    try:
        if args.ray is not None:
            return _main_ray(args, config, inputs, output, review)
        return _run_files(args, config, inputs, output, review, index, many, finished)
    finally:
        remove_empty(made)  # those this run created and nothing was written into (every file failed)


FILE_NAMES = {"-o": VIDEO_EXTS | IMAGE_EXTS, "--json": {".json"}}   # what a folder of outputs is not called


def _no_live_options(args: argparse.Namespace) -> None:
    """A live stream's options on a file: refused (they would do nothing)."""
    given = [flag for flag, value in (("--latency", args.latency != LIVE_DEFAULTS["latency"]),
                                      ("--on-overload", args.on_overload != LIVE_DEFAULTS["on_overload"]),
                                      ("--reconnect", args.reconnect != LIVE_DEFAULTS["reconnect"]),
                                      ("--record", args.record), ("--input-format", args.input_format),
                                      ("--input-option", args.input_option)) if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: for live streams (a URL, /dev/video*, or --live)")


def clashes(inputs: list[Path], output, json_folder: str | None, review) -> None:
    """Refuse, before any work, two inputs whose outputs would have one name: a file given twice, or x/clip.mp4 and
    y/clip.mp4 into one -o folder (the second would replace the first, or stop at it). Videos are told apart by
    the extension they are written with (clip.mp4 and clip.mov are two outputs, clip.avi and clip.mp4 one: AVI is
    written as .mp4); JSON files and review pages by name alone."""
    seen: dict[tuple, Path] = {}
    for src in inputs:
        video = Path(output) if output is not None else src.parent
        homes = [("-o", video, default_output(src, video).suffix.lower())]
        if json_folder:
            homes.append(("--json", Path(json_folder), ""))
        if review:
            homes.append(("--review", Path(review) if isinstance(review, str) else video, ""))
        for flag, folder, ext in homes:
            first = seen.setdefault((str(folder.resolve()), src.stem, ext), src)
            if first is src:
                continue
            if first.resolve() == src.resolve():
                raise ConfigError(f"{src} is given twice")
            raise OutputError(f"{first} and {src} would both be written as {src.stem}.anon.* in {folder} ({flag}): "
                              "the second would replace the first; give them different names or outputs")


def make_folders(folders: list[tuple[str, str]], many: bool) -> list[Path]:
    """Create the folders a run writes into (flag, path), or none: one line on failure. Refuses a file in the
    way and, with several inputs, a new one named like a file (``-o out.mp4``: one output was meant). Returns
    those created, innermost first."""
    made: list[Path] = []
    try:
        for flag, name in folders:
            path = Path(name)
            if path.exists() and not path.is_dir():
                why = "with several inputs it names a folder" if many else "it names a folder here"
                raise OutputError(f"{flag} {path} is a file; {why}")
            if many and not path.exists() and path.suffix.lower() in FILE_NAMES.get(flag, ()) \
                    and not name.endswith(("/", os.sep)):
                raise OutputError(f"{flag} {path}: with several inputs {flag} names a folder, not a {path.suffix} "
                                  "file (end it with / for a folder of that name)")
            new = [p for p in (path, *path.parents) if not p.exists()]
            made[:0] = new
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc})") from None
    except AnonError:
        remove_empty(made)
        raise
    return made


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a run created (innermost first) where they are still empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _run_files(args, config: Config, inputs: list[Path], output, review, index: Path | None, many: bool,
               finished: list[str]) -> int:
    """Each input with a progress bar; one bad file does not stop the others (exit 1 at the end). On a GPU with
    room for several, several files at once (``plan.files_at_once``), each with its bar."""
    from tqdm import tqdm

    from .api import process
    from .plan import files_at_once

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
            bar.close()  # before the line, not over it
            print(f"trt-anon: error: {say(exc)}", file=sys.stderr)
            if args.debug:
                raise
            return {"name": src.name, "report": None, "error": say(exc), "code": exc.exit_code}
        except Exception as exc:  # a bug: still one line, and fail closed (process() cleaned up)
            bar.close()
            if args.debug:
                raise
            print(f"trt-anon: internal error on {src}: {type(exc).__name__}: {exc} (rerun with --debug)",
                  file=sys.stderr)
            return {"name": src.name, "report": None, "error": f"internal error: {type(exc).__name__}"}
        finally:  # a signal too: the bar cleared before its last line, not after it
            bar.close()
        finished.append(report.output)
        tell(report, args.quiet)
        return {"name": src.name, "report": report, "page": report.review}

    rows = [one(src, None) for src in inputs] if at_once == 1 else _at_once(one, inputs, at_once, stop)
    failed = sum("error" in row for row in rows)
    if index is not None:
        _write_index(rows, index, args)
    if many and not args.quiet:
        _say(f"{len(inputs) - failed} of {len(inputs)} file{'s' * (len(inputs) != 1)} anonymized")
    if failed and not many:  # one input: its error's own code (2: an option that cannot work for it)
        return rows[0].get("code", 1)
    return 1 if failed else 0


def _say(text: str) -> None:
    """A line of the report on stdout. Where its reader has gone (``trt-anon ... | head -1``), the rest of the
    report goes nowhere and the run goes on: the files being written are the work, the report a courtesy."""
    try:
        print(text, flush=True)  # flushed: a pipe's reader that left is found here, not at exit
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def tell(report, quiet: bool) -> None:
    """A finished file: its summary, warnings and review page; with -q its warnings alone, on stderr (-q hides
    the progress and the summary, never what went wrong: a truncated input, a page not written)."""
    if quiet:
        for w in report.warnings:
            print(f"trt-anon: warning: {Path(report.input).name}: {w}", file=sys.stderr)
        return
    _say(report.summary())
    for w in report.warnings:
        _say(f"  warning: {w}")
    if report.review:
        _say(f"  review: {report.review}")


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
    if args.reconnect < 0:
        raise ConfigError(f"--reconnect must be 0 or more, not {args.reconnect}")
    if args.review or args.review_originals:
        raise ConfigError("--review is for files (a live stream is not kept to be read again); --json records "
                          "the boxes of every frame written, and --record keeps the anonymized stream")
    config = Config.from_options(config, json_path=args.json_path)
    said: list[str] = []  # what the run said as it went (on stderr): not said again with -q

    def log(line: str) -> None:
        said.append(line)
        print(f"trt-anon: {line}", file=sys.stderr)

    report = stream(args.inputs[0], args.output, config, latency=args.latency, on_overload=args.on_overload,
                    input_format=args.input_format, input_options=parse_options(args.input_option),
                    paced=args.live and not is_live(args.inputs[0]), progress=not args.quiet, log=log,
                    retries=args.reconnect, record=args.record)
    stopped = report.live.get("stopped")
    if not args.quiet:
        live = report.live
        _say(f"{report.summary()}\n  delay p50 {live['delay_p50']} s, p99 {live['delay_p99']} s, max "
             f"{live['delay_max']} s; dropped {live['dropped']}, covered {live['covered']}, reconnects "
             f"{live['reconnects']}")
        for w in report.warnings:
            _say(f"  warning: {w}")
    else:  # -q hides the status line and the summary, not what went wrong
        for w in report.warnings:
            if w not in said and not w.startswith("stopped ("):
                print(f"trt-anon: warning: {w}", file=sys.stderr)
    # stopped by a signal: the output is whole up to there, and the exit code says how it ended, as for files
    if stopped:
        print(f"trt-anon: {'interrupted' if stopped == 'SIGINT' else 'terminated'}; {args.output} is whole up to "
              "there", file=sys.stderr)
    return {"SIGINT": 130, "SIGTERM": 143}.get(stopped, 0)


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
    for r in reports:
        if not r.error:
            tell(r, args.quiet)
    return 1 if failed else 0


def _review_plan(args: argparse.Namespace, inputs: list[Path], output,
                 many: bool) -> tuple[bool | str | None, Path | None, str | None]:
    """What to pass as process(review=...), where the index goes (several inputs only) and the folder to create
    for it. Refuses, before any work, a missing matplotlib, an .html PATH for several files and an index.html
    that exists."""
    review = args.review or (True if args.review_originals else None)
    if not review:
        return None, None, None
    from .review import require
    require()
    if not many:
        return review, None, None
    made = None
    if isinstance(review, str):
        if review.lower().endswith((".html", ".htm")):
            raise ConfigError(f"--review {review}: with several inputs, name a folder (one page per file + index.html)")
        folder, made = Path(review), review
        review = f"{folder}{os.sep}"
    elif output is not None:
        folder = Path(output)
    else:  # outputs go beside their inputs
        folder = Path(os.path.commonpath([str(p.resolve().parent) for p in inputs]))
    index = folder / "index.html"
    if index.exists() and not args.overwrite:
        raise OutputError(f"{index} exists; pass --overwrite to replace it")
    return review, index, made


def _write_index(rows: list[dict], index: Path, args: argparse.Namespace) -> None:
    from .review import write_index
    try:
        write_index(rows, index, originals=args.review_originals, overwrite=args.overwrite)
    except (AnonError, OSError) as exc:  # the videos are written: a warning, like a failed page
        print(f"trt-anon: warning: review index not written: {exc}", file=sys.stderr)
        return
    if not args.quiet:
        _say(f"review index: {index}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
