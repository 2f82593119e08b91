"""The audit record in --json, and ``trt-anon verify``: a published file checked against the run that made it."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest

import trt_anon
from trt_anon.cli import main
from trt_anon.detect.centerface import MODEL


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(clips, tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    report = trt_anon.process(clips["two"].path, d / "out.mp4", json_path=str(d / "out.json"), style="blur")
    return clips["two"].path, d / "out.mp4", d / "out.json", report


def test_the_record_says_what_went_in_and_came_out(run):
    src, out, record, report = run
    audit = json.loads(record.read_text())["audit"]
    assert audit["input"] == {"path": str(src), "bytes": src.stat().st_size, "sha256": _sha(src)}
    assert audit["output"]["sha256"] == _sha(out) and audit["output"]["bytes"] == out.stat().st_size
    assert audit["model"]["sha256"] == _sha(MODEL.path(audit["model"]["precision"]))
    assert audit["options"]["style"] == "blur" and audit["options"]["codec"] == "h264"
    assert audit["backends"] == report.backends and audit["tool"] == f"trt_anon {trt_anon.__version__}"
    assert audit["counts"]["frames"] == report.frames and audit["counts"]["redacted_boxes"] == report.redacted_boxes


def test_verify_passes_the_files_the_record_describes(run, capsys):
    src, out, record, _ = run
    assert main(["verify", str(out), str(record)]) == 0
    assert main(["verify", str(out), str(record), "--input", str(src)]) == 0
    assert capsys.readouterr().out.count("OK: ") == 2


def test_verify_fails_on_any_changed_byte(run, tmp_path, capsys):
    src, out, record, _ = run
    changed = tmp_path / "changed.mp4"
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 1
    changed.write_bytes(bytes(data))
    assert main(["verify", str(changed), str(record)]) == 1
    other = tmp_path / "in.mp4"
    shutil.copy(src, other)
    with open(other, "ab") as f:
        f.write(b"\0")
    assert main(["verify", str(out), str(record), "--input", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("MISMATCH" in e for e in err) and "input" in err[1]


def test_verify_refuses_a_file_without_a_record_in_one_line(run, tmp_path, capsys):
    _, out, _, _ = run
    (tmp_path / "x.json").write_text('{"frames": []}')
    (tmp_path / "y.json").write_text("not json")
    for record in ("x.json", "y.json", "missing.json"):
        assert main(["verify", str(out), str(tmp_path / record)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_hashes_cover_files_larger_than_the_read_block(tmp_path, capsys):
    """Input and output both larger than the 1 MiB the hash reads at a time (lossless): the record's hashes are
    those of the whole files, and a byte changed past the first block fails ``verify``."""
    from synth import Face, make_clip

    clip = make_clip(tmp_path / "big.mp4", 1280, 720, frames=32, audio=0, crf=0, keyint=1,
                     faces=[Face(120, (60, 60), (3.0, 0))])
    out, record = tmp_path / "out.mp4", tmp_path / "out.json"
    trt_anon.process(clip.path, out, json_path=str(record), crf=0)
    block = 1 << 20
    assert clip.path.stat().st_size > 2 * block and out.stat().st_size > block + 1000
    audit = json.loads(record.read_text())["audit"]
    assert audit["input"]["sha256"] == _sha(clip.path) and audit["output"]["sha256"] == _sha(out)
    assert main(["verify", str(out), str(record), "--input", str(clip.path)]) == 0
    for name, path in (("output", out), ("input", clip.path)):
        changed = tmp_path / f"changed-{name}.mp4"
        data = bytearray(path.read_bytes())
        data[block + (len(data) - block) // 2] ^= 1  # past the first block, same size
        changed.write_bytes(bytes(data))
        args = [str(changed), str(record)] if name == "output" else [str(out), str(record), "--input", str(changed)]
        assert main(["verify", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "output" in err[0] and "input" in err[1] and all("MISMATCH" in e for e in err)
