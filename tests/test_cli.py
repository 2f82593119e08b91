"""The CLI as a user meets it: one-line errors, exit codes, nothing left behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synth import Face, make_clip


def cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "trt_anon", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_one_line_error(r, code=1, match=""):
    assert r.returncode == code, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert "Traceback" not in r.stderr
    assert lines and lines[-1].startswith("trt-anon: error:"), r.stderr
    assert match in lines[-1], lines[-1]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_demo_runs_twice_and_prints_summary(tmp_path):
    r = cli("--demo", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert leftovers(tmp_path) == ["demo.anon.mp4"]
    first = (tmp_path / "demo.anon.mp4").stat().st_ino
    r = cli("--demo", cwd=tmp_path)  # the demo replaces its own output
    assert r.returncode == 0, r.stderr
    assert "demo.anon.mp4: 120 frames" in r.stdout and "detect=onnxruntime" in r.stdout
    assert leftovers(tmp_path) == ["demo.anon.mp4"] and (tmp_path / "demo.anon.mp4").stat().st_ino != first
    # a file the user names is theirs: kept, and the message names the option to type
    r = cli("--demo", "-o", "demo.anon.mp4", cwd=tmp_path)
    assert_one_line_error(r, match="exists; pass --overwrite to replace it")
    assert "=True" not in r.stderr


def test_version_and_help():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("trt-anon ")
    r = cli("--help")
    assert "--mosaic-cell" in r.stdout and "--det-size" in r.stdout


def test_folder_in_folder_out(clips, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(clips["two"].path, src / "a.mp4")
    shutil.copy(clips["enter_leave"].path, src / "b clip.mp4")
    (src / "notes.txt").write_text("not a video")
    r = cli(src, "-o", tmp_path / "out", "--json", tmp_path / "js")
    assert r.returncode == 0, r.stderr
    assert leftovers(tmp_path / "out") == ["a.anon.mp4", "b clip.anon.mp4"]
    assert leftovers(tmp_path / "js") == ["a.anon.json", "b clip.anon.json"]
    assert "2 of 2 files anonymized" in r.stdout
    assert leftovers(src) == ["a.mp4", "b clip.mp4", "notes.txt"]


def test_a_reader_that_left_does_not_stop_the_run(clips, tmp_path):
    """stdout piped into a reader that has already gone (``trt-anon ... | head -1``): every file is still written
    and the exit code is the run's, with no traceback; ``verify`` the same."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(clips["two"].path, src / "a.mp4")
    shutil.copy(clips["enter_leave"].path, src / "b.mp4")

    def gone(*args):
        read, write = os.pipe()
        os.close(read)  # the reader left before the first line
        try:
            return subprocess.run([sys.executable, "-m", "trt_anon", *map(str, args)], stdout=write,
                                  stderr=subprocess.PIPE, text=True, timeout=300)
        finally:
            os.close(write)

    r = gone(src, "-o", tmp_path / "out", "--json", tmp_path / "js")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert leftovers(tmp_path / "out") == ["a.anon.mp4", "b.anon.mp4"]
    r = gone("verify", tmp_path / "out" / "b.anon.mp4", tmp_path / "js" / "b.anon.json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


@pytest.fixture
def bad_inputs(tmp_path, clips):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    data = clips["moving"].path.read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    import av
    import numpy as np
    with av.open(str(d / "audio.m4a"), "w") as out:
        s = out.add_stream("aac", rate=48000)
        for k in range(20):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 48000, k * 1024
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    (d / "empty_dir").mkdir()
    return d


@pytest.mark.parametrize("name,match", [
    ("missing.mp4", "no such file"), ("empty.mp4", "empty"), ("text.mp4", "not a video"),
    ("truncated.mp4", "not a video"), ("audio.m4a", "audio only"), ("empty_dir", "no video or image files"),
])
def test_bad_inputs_one_line_error_no_output(bad_inputs, name, match):
    before = leftovers(bad_inputs)
    r = cli(bad_inputs / name)
    assert_one_line_error(r, match=match)
    assert leftovers(bad_inputs) == before


@pytest.mark.parametrize("args,match", [
    (["--target", "nose"], "argument --target: invalid choice: 'nose' (choose from"),
    (["--style", "pixelate"], "argument --style: invalid choice: 'pixelate' (choose from"),
    (["--codec", "h265"], "argument --codec: invalid choice: 'h265' (choose from"),
    (["--preset", "quick"], "argument --preset: invalid choice: 'quick' (choose from"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--threshold", "high"], "argument --threshold: invalid float value: 'high'"),
])
def test_argparse_errors_are_one_line_with_the_choices(tmp_path, args, match):
    """A bad choice or an unknown flag: one line with the accepted values (not argparse's whole usage block
    first), exit 2, nothing written."""
    r = cli("x.mp4", *args, cwd=tmp_path)
    assert_one_line_error(r, code=2, match=match)
    assert r.stderr.count("\n") == 1 and r.stdout == "" and "see trt-anon --help" in r.stderr
    if "choose from" in match:
        choices = {"--target": ("face", "eyes"), "--style": ("mosaic", "blur", "solid"),
                   "--codec": ("h264", "hevc", "vp9", "av1"), "--preset": ("ultrafast", "veryfast", "veryslow")}
        assert all(c in r.stderr for c in choices[args[0]]), r.stderr
    assert leftovers(tmp_path) == []
    r = cli("verify", "out.mp4", cwd=tmp_path)  # the verify command's parser too
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("trt-anon verify: error:")


@pytest.fixture
def two_inputs(clips, tmp_path):
    """A folder holding one video and one text file named like a video (the issue's `in.mp4 notes.mp4`)."""
    d = tmp_path / "work"
    d.mkdir()
    shutil.copy(clips["two"].path, d / "in.mp4")
    (d / "notes.mp4").write_text("not a video")
    return d


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create anything in: a read-only folder, or for root (whom permissions do
    not stop) sysfs, where mkdir is refused."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "out"
    return Path("/sys/trt_anon_test_out")


@pytest.mark.parametrize("case", ["existing file", "video name", "under /proc", "not writable", "json file",
                                  "json name", "review file"])
def test_several_inputs_with_an_impossible_output_folder(two_inputs, tmp_path, case):
    """With several inputs -o (and --json) name folders: one that cannot be one is a one-line error before any
    work, exit 1, and nothing is written or created (the file in the way is untouched)."""
    d = two_inputs
    (d / "in.anon.mp4").write_bytes(b"keep me")
    (d / "pages").write_bytes(b"")
    target, extra, match = {
        "existing file": ("in.anon.mp4", [], "-o in.anon.mp4 is a file; with several inputs it names a folder"),
        "video name": ("out.mp4", [], "-o out.mp4: with several inputs -o names a folder, not a .mp4 file"),
        "under /proc": ("/proc/trt_anon_out/", [], "cannot create the folder"),
        "not writable": (str(_unwritable(tmp_path)), [], "cannot create the folder"),
        "json file": ("anon", ["--json", "notes.mp4"], "--json notes.mp4 is a file; with several inputs"),
        "json name": ("anon", ["--json", "dets.json"], "--json dets.json: with several inputs --json names a folder"),
        "review file": ("anon", ["--review", "pages"], "--review pages is a file; with several inputs"),
    }[case]
    before = leftovers(d)
    r = cli("in.mp4", "notes.mp4", "-o", target, *extra, cwd=d)
    assert_one_line_error(r, code=1, match=match)
    assert r.stderr.count("\n") == 1 and r.stdout == ""
    assert leftovers(d) == before and (d / "in.anon.mp4").read_bytes() == b"keep me"
    assert not Path(target).exists() or target == "in.anon.mp4"


def test_a_run_that_writes_nothing_leaves_no_folder(two_inputs):
    """Folders made for a run's outputs go again when every file failed: nothing left. A trailing / makes a
    folder named like a file."""
    d = two_inputs
    r = cli("in.mp4", "notes.mp4", "-o", "anon.mp4/", "-q", cwd=d)
    assert r.returncode == 1 and (d / "anon.mp4" / "in.anon.mp4").is_file()
    shutil.rmtree(d / "anon.mp4")
    (d / "in.mp4").write_text("not a video either")
    r = cli("in.mp4", "notes.mp4", "-o", "anon/new", "--json", "js", "-q", cwd=d)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert leftovers(d) == ["in.mp4", "notes.mp4"]


def test_output_under_a_file_says_it_is_a_file(two_inputs):
    """-o notes.mp4/out.mp4 where notes.mp4 is a file: that it is a file, not that a folder is missing."""
    d = two_inputs
    for out in ("notes.mp4/out.mp4", "notes.mp4/sub/out.mp4"):
        assert_one_line_error(cli("in.mp4", "-o", out, cwd=d), match="output " + out + ": notes.mp4 is a file, "
                              "not a folder")
    assert_one_line_error(cli("in.mp4", "-o", "missing/out.mp4", cwd=d), match="output folder missing does not exist")
    assert_one_line_error(cli("in.mp4", "--review", "notes.mp4/pages/", cwd=d),
                          match="review page folder notes.mp4/pages: cannot create it")
    assert leftovers(d) == ["in.mp4", "notes.mp4"]


def test_quiet_hides_progress_and_summary_not_warnings(clips, tmp_path):
    """-q: no bar, no summary; a warning (here: a file cut short after its header) still goes to stderr."""
    import av
    src = av.open(str(clips["moving"].path))
    with av.open(str(tmp_path / "whole.mp4"), "w", options={"movflags": "faststart"}) as out:  # the frame
        o = out.add_stream_from_template(src.streams.video[0])                                # count up front
        for pkt in src.demux(src.streams.video[0]):
            if pkt.dts is not None:
                pkt.stream = o
                out.mux(pkt)
    src.close()
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    r = cli("cut.mp4", "-q", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == "", r.stdout
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("trt-anon: warning: cut.mp4: the header lists 70 frames but "
                                                   "only "), r.stderr
    assert "(truncated file?)" in lines[0]
    r = cli("cut.mp4", "-o", "cut2.mp4", cwd=tmp_path)   # without -q: the summary, the warning under it
    assert "cut2.mp4: " in r.stdout and "  warning: the header lists 70 frames" in r.stdout
    assert "trt-anon: warning" not in r.stderr
    r = cli("--help")
    assert "warnings (a truncated input, say) and errors still" in " ".join(r.stdout.split())


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_the_review_page_is_written_says_what_was_kept(clips, tmp_path, monkeypatch, capsys, sig,
                                                                      code, word):
    """The video and its JSON are renamed into place before the review page is drawn: a signal then leaves
    them (whole), and the last line says so; the page, written to a temporary file, is not left."""
    pytest.importorskip("matplotlib")
    import trt_anon.review
    from trt_anon import cli as trt_cli

    src = tmp_path / "in.mp4"
    shutil.copy(clips["two"].path, src)
    seen = []

    def stopped(report, *args, **kwargs):   # the signal arrives while the page is drawn
        seen.append(Path(report.output).exists())
        os.kill(os.getpid(), sig)
        time.sleep(5)   # the handler raises first
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(trt_anon.review, "write_review", stopped)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    # Python's own Ctrl-C handler, as a terminal's run has it (a shell's background job starts with SIGINT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        got = trt_cli.main([str(src), "--review", "--json", str(tmp_path / "in.anon.json"), "-q"])
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    err = capsys.readouterr().err
    assert got == code and seen == [True]
    assert err.splitlines() == [f"trt-anon: {word}; kept the finished {tmp_path / 'in.anon.mp4'}, "
                                f"{tmp_path / 'in.anon.json'} (the review page of in.anon.mp4 was not written); "
                                "no partial output left"], err
    assert leftovers(tmp_path) == ["in.anon.json", "in.anon.mp4", "in.mp4"]


def test_bad_option_exit_2(tmp_path):
    r = cli("x.mp4", "--det-size", "650")
    assert_one_line_error(r, code=2, match="multiple of 32")
    r = cli()
    assert_one_line_error(r, code=2, match="no input")
    # the command line's own names, not the Python API's (fill_color, batch_size)
    assert_one_line_error(cli("x.mp4", "--style", "solid", "--fill-color", "red"), code=2, match="--fill-color must be")
    assert_one_line_error(cli("x.mp4", "--batch-size", "0"), code=2, match="--batch-size must be between 1 and 256")
    assert_one_line_error(cli("x.mp4", "--mosaic-cell", "1"), code=2, match="--mosaic-cell must be")


def test_output_refusals(clips, tmp_path):
    src = tmp_path / "in.mp4"
    shutil.copy(clips["two"].path, src)
    assert_one_line_error(cli(src, "-o", src), match="is the input")
    assert_one_line_error(cli(src, "-o", src, "--overwrite"), match="is the input")
    assert_one_line_error(cli(src, "-o", tmp_path / "nope" / "out.mp4"), match="does not exist")
    assert_one_line_error(cli(src, "-o", "/proc/out.mp4"), match="cannot write")
    (tmp_path / "in.anon.mp4").write_bytes(b"keep me")
    assert_one_line_error(cli(src), match="exists")
    assert (tmp_path / "in.anon.mp4").read_bytes() == b"keep me"
    assert leftovers(tmp_path) == ["in.anon.mp4", "in.mp4"]


def test_one_bad_file_does_not_stop_the_others(clips, tmp_path):
    good = tmp_path / "good.mp4"
    shutil.copy(clips["two"].path, good)
    r = cli(tmp_path / "missing.mp4", good)
    assert r.returncode == 1
    assert "no such file" in r.stderr and (tmp_path / "good.anon.mp4").exists()
    assert "1 of 2 files anonymized" in r.stdout


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_nothing(tmp_path, sig, code):
    """Ctrl-C or SIGTERM while the temporary file is being written: exit 130 / 143, nothing left."""
    src = tmp_path / "long.mp4"
    make_clip(src, 640, 360, frames=300, faces=[Face(60, (50, 50), (1, 0))])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Ctrl-C as from a terminal: a shell starts background jobs with SIGINT ignored (CI run with "&"), and a
    # program started that way rightly keeps ignoring it
    p = subprocess.Popen([sys.executable, "-m", "trt_anon", str(src)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not [f for f in tmp_path.glob(".long.*.part.mp4") if f.stat().st_size]:  # wait until it is writing
        assert p.poll() is None and time.monotonic() < deadline, "never saw the temporary file being written"
        time.sleep(0.05)
    assert not (tmp_path / "long.anon.mp4").exists(), "written under the output's name before it was whole"
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    assert "Traceback" not in err and err.splitlines()[-1].endswith("; no partial output left")
    assert "kept" not in err
    assert leftovers(tmp_path) == ["long.mp4"]


def test_single_file_into_new_folder_with_json_folder(clips, tmp_path):
    (tmp_path / "js").mkdir()
    r = cli(clips["two"].path, "-o", f"{tmp_path / 'new'}/", "--json", tmp_path / "js", "-q")
    assert r.returncode == 0, r.stderr
    assert leftovers(tmp_path / "new") == ["two.anon.mp4"]
    assert leftovers(tmp_path / "js") == ["two.anon.json"]


def test_the_options_are_configs_fields_declared_once():
    """Each Config field with help is a flag whose default, choices and help are the field's; the defaults the
    parser gives make the default Config (a field added to Config is on the command line, or deliberately not)."""
    import dataclasses

    from trt_anon.cli import _parser
    from trt_anon.config import CODECS, PRESETS, STYLES, Config

    actions = {a.dest: a for a in _parser()._actions}
    fields = [f for f in dataclasses.fields(Config) if "help" in f.metadata]
    assert {f.name for f in dataclasses.fields(Config)} - {f.name for f in fields} == {
        "margin_px", "margin_rel", "eyes_every"}  # API-only
    for f in fields:
        a = actions[f.name]
        assert a.help == f.metadata["help"] and a.default == f.default, f.name
        assert a.choices == f.metadata.get("choices"), f.name
    assert (actions["style"].choices, actions["codec"].choices, actions["preset"].choices) == (STYLES, CODECS, PRESETS)
    assert actions["json_path"].option_strings == ["--json"] and actions["engine_path"].option_strings == ["--engine"]
    args = _parser().parse_args(["x.mp4"])
    assert Config(**{f.name: getattr(args, f.name) for f in fields}) == Config()


def test_outputs_that_would_replace_each_other_are_refused_before_any_work(clips, tmp_path):
    """Two inputs named alike into one folder, a file given twice, a JSON file or page at the video's own path:
    the second would replace the first (or, without --overwrite, stop at it after the first was done). Refused
    before anything is written, with or without --overwrite."""
    for d in ("x", "y"):
        (tmp_path / d).mkdir()
        shutil.copy(clips["two"].path, tmp_path / d / "clip.mp4")
    shutil.copy(clips["two"].path, tmp_path / "x" / "clip.mov")
    x, y = Path("x", "clip.mp4"), Path("y", "clip.mp4")
    for extra in ((), ("--overwrite",)):
        r = cli(x, y, "-o", "out/", *extra, cwd=tmp_path)
        assert_one_line_error(r, match=f"{x} and {y} would both be written as clip.anon.* in out (-o)")
    assert_one_line_error(cli(x, x, cwd=tmp_path), code=2, match="x/clip.mp4 is given twice")
    # clip.mp4 and clip.mov make two videos, but one NAME.anon.json; clip.avi is written as clip.anon.mp4
    r = cli(x, "x/clip.mov", "--json", "js", cwd=tmp_path)
    assert_one_line_error(r, match="would both be written as clip.anon.* in js (--json)")
    shutil.copy(clips["two"].path, tmp_path / "y" / "clip.avi")
    assert_one_line_error(cli(x, "y/clip.avi", "-o", "out/", cwd=tmp_path), match="would both be written as")
    assert leftovers(tmp_path) == ["x", "y"] and leftovers(tmp_path / "x") == ["clip.mov", "clip.mp4"]
    # one input: its JSON file at the video's path
    for extra in ((), ("--overwrite",)):
        r = cli(x, "-o", "same.mp4", "--json", "same.mp4", *extra, cwd=tmp_path)
        assert_one_line_error(r, match="the JSON file and the output are both same.mp4; give each its own name")
    assert leftovers(tmp_path) == ["x", "y"]


def test_json_paths_are_named_as_json_files(clips, tmp_path):
    """--json's own words: a name without .json is not told to name a container; a folder path ending in / is
    created and holds NAME.anon.json."""
    src = clips["two"].path
    r = cli(src, "-o", "a.mp4", "--json", "run", cwd=tmp_path)
    assert_one_line_error(r, match="JSON file run has no extension; name it, e.g. run.json")
    r = cli(src, "-o", "a.mp4", "--json", "nope/x.json", cwd=tmp_path)
    assert_one_line_error(r, match="JSON file folder nope does not exist")
    assert leftovers(tmp_path) == []
    r = cli(src, "-o", "a.mp4", "--json", "js/", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert leftovers(tmp_path / "js") == ["two.anon.json"]


def test_options_that_do_nothing_here_are_refused(clips, tmp_path):
    """A live stream's options on a file, --review given a video name that is no input, --ray given the input:
    refused, or taken for what the user meant, before any work."""
    src = clips["two"].path
    for args in (("--latency", "2"), ("--on-overload", "cover"), ("--reconnect", "-1"), ("--input-format", "mpegts"),
                 ("--input-option", "rtsp_transport=tcp")):
        assert_one_line_error(cli(src, *args, cwd=tmp_path), code=2, match=f"{args[0]}: for live streams")
    r = cli(src, "-o", "x.mp4", "--review", "x.mp4", cwd=tmp_path)
    assert_one_line_error(r, code=2, match="--review x.mp4: the review page is an .html file")
    r = cli("--ray", src, cwd=tmp_path)   # the input, not Ray's address (Ray itself may be missing here)
    assert "no input given" not in r.stderr and "Traceback" not in r.stderr
    r = cli("--ray", "missing.mp4", cwd=tmp_path)   # (without Ray: that it is missing, first)
    assert r.returncode != 0 and "no input given" not in r.stderr and "Traceback" not in r.stderr
    assert_one_line_error(cli("--demo", "--latency", "2", cwd=tmp_path), code=2, match="--latency: for live streams")
    assert leftovers(tmp_path) in ([], ["two.anon.mp4"])


def test_the_demo_replaces_only_its_own_video(tmp_path):
    (tmp_path / "mine.json").write_text("keep me")
    assert_one_line_error(cli("--demo", "--json", "mine.json", cwd=tmp_path), match="--json mine.json exists")
    assert leftovers(tmp_path) == ["mine.json"] and (tmp_path / "mine.json").read_text() == "keep me"
