"""The audit record of a run, in its ``--json`` file: what went in and what came out (SHA-256 of both), with
which tool version, model, options and backends, and what was redacted. A published file can be checked
against it later, by anyone holding the record: ``trt-anon verify OUTPUT RECORD [--input INPUT]``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

from .errors import InputError
from .report import Report

FORMAT = 1  # the record's layout; a reader refuses one it does not know


def sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB pieces (any size, bounded memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record(source: Path, output: Path, written: Path, config, report: Report, decisions=None) -> dict:
    """The record for a run of ``source`` into ``output``, whose bytes are at ``written`` (its temporary
    name: hashed before it is renamed into place); ``decisions`` (decisions.Decisions): what a review changed."""
    return _record({"path": str(source), "bytes": source.stat().st_size, "sha256": sha256(source)},
                   {"path": str(output), "bytes": written.stat().st_size, "sha256": sha256(written)},
                   config, report, decisions.summary() if decisions is not None else None)


def live_record(source: str, outputs: list[str], config, report: Report) -> dict:
    """The record of a live run: the stream it read (a URL, which has no bytes to hash; a file played live is
    hashed), and each file it wrote (the output, the recording: ``outputs``) with its SHA-256; an output that
    is a stream or an HLS folder (its segments roll away) is named without one."""
    def entry(name: str) -> dict:
        path = Path(name)
        if "://" in name or path.suffix.lower() == ".m3u8" or not path.is_file():
            return {"path": name, "stream": True}
        return {"path": name, "bytes": path.stat().st_size, "sha256": sha256(path)}

    files = [entry(o) for o in outputs]
    out = _record(entry(source), files[0], config, report, None)
    if len(files) > 1:
        out["recording"] = files[1]
    out["counts"].update({k: report.live[k] for k in ("dropped", "covered", "detector_errors", "reconnects")})
    return out


def _record(input: dict, output: dict, config, report: Report, decisions) -> dict:
    from . import __version__
    from .detect import load_model

    precision = config.cpu_precision if report.backends.get("detect", "").startswith("onnxruntime") else "fp32"
    # where the signing key is kept is no one's business: the output's Content Credentials say who signed
    options = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("overwrite", "json_path", "sign")}
    return {
        "format": FORMAT,
        "tool": f"trt_anon {__version__}",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": input,
        "output": output,
        "model": {"name": config.model, "precision": precision, "sha256": load_model(config.model).sha256(precision)},
        "options": options,
        "backends": dict(report.backends),
        "decisions": decisions,
        "counts": {"frames": report.frames, "faces": report.faces, "frames_with_faces": report.frames_with_faces,
                   "redacted_boxes": report.redacted_boxes, "decode_errors": report.decode_errors},
    }


def load(path: Path) -> dict:
    """The audit record in a ``--json`` file; InputError (one line) if there is none."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise InputError(f"{path} is not a JSON file written by trt-anon --json") from None
    audit = data.get("audit") if isinstance(data, dict) else None
    if not isinstance(audit, dict) or audit.get("format") != FORMAT:
        raise InputError(f"{path} holds no audit record trt-anon can read (write one with --json)")
    return audit


def verify(output: Path, record_path: Path, input: Path | None = None) -> list[str]:
    """What does not match the record: the output's (and, if given, the input's) size or SHA-256. A live run's
    record holds its recording too: the output matches either. An empty list: the files are the ones the record
    describes."""
    audit = load(record_path)
    problems = []
    for what, path in (("output", output), ("input", input)):
        if path is None:
            continue
        wanted = [e for e in (audit[what], audit.get("recording") if what == "output" else None)
                  if e and "sha256" in e]
        if not wanted:
            raise InputError(f"the record holds no SHA-256 of the {what}: it was a live stream "
                             f"({audit[what]['path']})")
        try:
            size, digest = Path(path).stat().st_size, sha256(Path(path))
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
        if all(digest != want["sha256"] for want in wanted):
            want = wanted[0]
            problems.append(f"{what} {path}: SHA-256 {digest[:16]}... is not the recorded {want['sha256'][:16]}... "
                            f"({size} bytes, recorded {want['bytes']})")
    return problems
