"""Content Credentials: a C2PA manifest, signed, inside the output, saying what trt_anon changed, with what, and
from which input, so that anyone can check a published file with any C2PA tool (c2patool, the Content
Authenticity Initiative's verify site) without our audit record. Written and read with the C2PA project's own
library, c2pa-python (``pip install 'trt_anon[c2pa]'``), imported only when asked for.

The manifest claims one edit (``c2pa.edited``: faces or eyes obscured, with the tool, its version, the model and
its SHA-256, the style and the target) of one parent ingredient, the input, named by its SHA-256 and size. Where
the input carried Content Credentials (a camera's signed capture), they become the parent's manifest, so the
chain from the capture goes on. Never written: a thumbnail or any other picture of the input (it would show the
faces); file names (a name can identify a person); and, unless ``keep_metadata``, the location, device and people
assertions of the input's own manifests, which are redacted the way C2PA provides for (each redaction is listed
and signed). The same goes for pictures in those manifests (their thumbnails), always.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, InputError, OutputError

# Assertions of the input's own manifests that hold pictures of it: always redacted from the copy we embed.
PICTURES = ("c2pa.thumbnail", "c2pa.depthmap")
# Assertions that locate a capture, name the device or the people in it (EXIF GPS and serials, IPTC's persons
# shown): redacted unless keep_metadata, as the file's own tags are (media.container.PRIVATE_TAG).
METADATA = ("stds.exif", "stds.iptc", "c2pa.metadata", "cawg.metadata")
# The library's settings for every run: no thumbnails made, nothing fetched over the network while reading.
SETTINGS = {"builder": {"thumbnail": {"enabled": False}},
            "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
# c2pa-python's failure code for a signer that no trust anchor vouches for: not a broken file.
UNTRUSTED = "signingCredential.untrusted"


def _c2pa():
    try:
        import c2pa
    except ImportError:
        raise ConfigError("--sign and reading Content Credentials need the C2PA library: "
                          "pip install 'trt_anon[c2pa]'") from None
    return c2pa


@functools.lru_cache(maxsize=None)
def formats() -> frozenset[str]:
    """The output extensions (".mp4") trt_anon writes that the C2PA library can sign, as the library says."""
    from .media.files import MUXERS
    from .media.stills import FORMATS
    theirs = {t.lower() for t in _c2pa().Builder.get_supported_mime_types()}
    return frozenset(ext for ext in (*MUXERS, *FORMATS) if ext[1:] in theirs)


def _context(c2pa, extra: dict | None = None):
    settings = json.loads(json.dumps(SETTINGS))
    for key, value in (extra or {}).items():
        settings.setdefault(key, {}).update(value)
    return c2pa.Context.from_dict(settings)


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--sign: cannot read the {what} {path}: {exc.strerror or exc}") from None


def _alg(key) -> str:
    """The C2PA signing algorithm for a private key (cryptography's object)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
        if alg:
            return alg
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"  # C2PA signs with RSA-PSS only
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ConfigError("--sign: the key is not one C2PA signs with (EC P-256, P-384 or P-521, RSA, Ed25519)")


@dataclass(frozen=True)
class _Signing:
    """What a Signer is made of. The key's bytes live only as long as one signature and are never shown."""

    alg: str
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    tsa_url: str | None = None

    def signer(self, c2pa):
        info = c2pa.C2paSignerInfo(self.alg.encode(), self.cert, self.key,
                                   self.tsa_url.encode() if self.tsa_url else None)
        return c2pa.Signer.from_info(info)


def _signing(sign) -> _Signing:
    """``sign`` as Config holds it: (CERT, KEY) PEM files, or one c2pa settings file (JSON) whose
    ``signer.local`` gives ``alg``, ``sign_cert``, ``private_key`` (PEM, or files beside it) and ``tsa_url``, the
    time-stamp authority that keeps a signature checkable after its certificate expires."""
    if isinstance(sign, str):
        try:
            local = json.loads(_read(sign, "settings file"))["signer"]["local"]
            alg, tsa_url = str(local["alg"]).lower(), local.get("tsa_url")
            pems = [local["sign_cert"], local["private_key"]]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"--sign {sign}: not a c2pa settings file with a signer.local section (alg, sign_cert, "
                              "private_key, tsa_url); or give --sign CERT KEY") from None
        base = Path(sign).parent
        cert, key = (p.encode() if p.lstrip().startswith("-----BEGIN") else _read(str(base / p), what)
                     for p, what in zip(pems, ("certificate", "key")))
        return _Signing(alg, cert, key, tsa_url)
    cert, key = _read(sign[0], "certificate"), _read(sign[1], "key")
    return _Signing(_check_pair(cert, key, sign), cert, key)


def _check_pair(cert: bytes, key: bytes, names) -> str:
    """What can be said better than the library says it: a file that is not PEM, an encrypted key, a key that is
    not the certificate's, a certificate out of its dates. The algorithm for the key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError:
        raise ConfigError(f"--sign: {names[0]} is not a PEM certificate chain") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise ConfigError(f"--sign: {names[1]} is encrypted; give the key unencrypted (readable by this user "
                          "only)") from None
    except (ValueError, Exception):
        raise ConfigError(f"--sign: {names[1]} is not a PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ConfigError(f"--sign: {names[1]} is not the key of the certificate in {names[0]} (its first)")
    now = time.time()
    if leaf.not_valid_after_utc.timestamp() < now:
        raise ConfigError(f"--sign: the certificate in {names[0]} expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    if leaf.not_valid_before_utc.timestamp() > now:
        raise ConfigError(f"--sign: the certificate in {names[0]} is not valid before "
                          f"{leaf.not_valid_before_utc:%Y-%m-%d}")
    return _alg(private)


def _refused(exc: Exception) -> str:
    """The library's reason, in one line without its error-class prefix."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    for prefix in ("Signature: ", "Other: ", "Verify: "):
        text = text.removeprefix(prefix)
    if text == "the certificate is invalid":
        text += (" for C2PA (a signing certificate needs the digitalSignature key usage, an extended key usage "
                 "such as emailProtection or documentSigning, and a CA above it)")
    return text


def check(sign, output: Path) -> None:
    """Before any work: the library is installed, it can sign ``output``'s container, and it accepts these
    credentials (``accept``). One-line ConfigError/OutputError otherwise."""
    ext = output.suffix.lower()
    if ext not in formats():  # (and the library is installed)
        raise OutputError(f"cannot sign {output.name}: the C2PA library writes Content Credentials into "
                          f"{', '.join(sorted(formats()))}; name one of those with -o")
    accept(sign)


def accept(sign) -> None:
    """The library accepts these credentials: it signs a tiny picture in memory with them (once while the files
    stay as they are). ConfigError with its reason otherwise: a wrong key, an expired certificate, a bad chain."""
    _c2pa()
    names = (sign,) if isinstance(sign, str) else sign
    try:
        stamp = tuple(os.stat(n).st_mtime_ns for n in names)
    except OSError as exc:
        raise ConfigError(f"--sign: cannot read {exc.filename}: {exc.strerror}") from None
    _accepted(sign, stamp)


@functools.lru_cache(maxsize=16)
def _accepted(sign, stamp: tuple) -> None:
    """The test signature of ``accept``, once per credentials as they are on disk (``stamp``: their mtimes)."""
    from PIL import Image
    c2pa = _c2pa()
    signing = _signing(sign)
    picture = io.BytesIO()
    Image.new("RGB", (8, 8)).save(picture, "PNG")
    picture.seek(0)
    try:
        builder = c2pa.Builder({}, _context(c2pa))
        builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CREATION)
        builder.sign(signing.signer(c2pa), "png", picture, io.BytesIO())
    except c2pa.C2paError as exc:
        raise ConfigError(f"--sign: the C2PA library refuses these credentials: {_refused(exc)}") from None


def sign(written: Path, job, report) -> None:
    """Put the manifest for ``job`` (a Plan) into ``written``, its output under its temporary name, whole: signed
    into a second temporary file beside it, which then takes its place. Any failure is an OutputError and leaves
    ``written`` as it was (the caller's fail-closed rename then removes it). Who signed: ``report.signed``."""
    c2pa = _c2pa()
    source, config, ext = job.source, job.config, written.suffix.lower()
    ctx = _context(c2pa)
    redact, parent = _parent(c2pa, ctx, source, config.keep_metadata, report)
    builder = c2pa.Builder(_manifest(source, config, report, job.decisions, redact, parent is None), ctx)
    builder.set_intent(c2pa.C2paBuilderIntent.EDIT)
    fd, tmp = tempfile.mkstemp(prefix=f".{written.stem}.", suffix=f".sign{ext}", dir=written.parent)
    os.close(fd)
    try:
        try:
            if parent is not None:  # the library copies the input's manifest store and records its validation
                with open(source, "rb") as src:
                    builder.add_ingredient(_ingredient(source), source.suffix.lower()[1:], src)
            with open(written, "rb") as src, open(tmp, "w+b") as dst:
                builder.sign(_signing(config.sign).signer(c2pa), ext[1:], src, dst)
            with open(tmp, "rb") as signed:
                store = json.loads(c2pa.Reader(ext[1:], signed, context=ctx).json())
        except c2pa.C2paError as exc:
            raise OutputError(f"signing {job.output} failed: {_refused(exc)}") from None
        _check_signed(store, job.output)
        os.replace(tmp, written)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    info = store["manifests"][store["active_manifest"]].get("signature_info", {})
    report.signed = {"signer": _who(info), "parent": parent, "redacted": len(redact)}


def _check_signed(store: dict, output: Path) -> None:
    """The signed file holds no picture in any manifest and its own manifest validates: else nothing is kept."""
    for label, manifest in store["manifests"].items():
        held = [x for x in (manifest, *manifest.get("ingredients", ())) if x.get("thumbnail") or x.get("data")]
        if held:
            raise OutputError(f"{output} not written: the Content Credentials of its input hold a picture or data "
                              f"that cannot be removed (in {label}; it could show the faces)")
    failed = [f for f in store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
              if f.get("code") != UNTRUSTED]
    if failed:
        raise OutputError(f"{output} not written: signed, it does not validate ({failed[0].get('explanation')})")


def _parent(c2pa, ctx, source: Path, keep_metadata: bool, report) -> tuple[list[str], str | None]:
    """The input's own Content Credentials, if it has any the library can read: the assertions to redact from
    them (pictures; location, device and people unless ``keep_metadata``) and its active manifest's label."""
    if source.suffix.lower()[1:] not in {t.lower() for t in c2pa.Reader.get_supported_mime_types()}:
        return [], None
    try:
        with open(source, "rb") as f:
            reader = c2pa.Reader.try_create(source.suffix.lower()[1:], f, context=ctx)
            if reader is None:
                return [], None
            store = json.loads(reader.detailed_json())
    except c2pa.C2paError as exc:
        report.warnings.append(f"the input's Content Credentials could not be read ({_refused(exc)}); the signed "
                               "output names the input by its hash only")
        return [], None
    drop = PICTURES if keep_metadata else PICTURES + METADATA
    redact = [f"self#jumbf=/c2pa/{label}/c2pa.assertions/{name}"
              for label, manifest in store.get("manifests", {}).items()
              for name in manifest.get("assertion_store", {}) if name.startswith(drop)]
    return redact, store.get("active_manifest")


def _ingredient(source: Path) -> dict:
    """The input as the parent ingredient: by its SHA-256 and size, never its name or any picture of it."""
    from .audit import sha256
    return {"relationship": "parentOf", "description": "the input, identified by its SHA-256",
            "metadata": {"sha256": sha256(source), "bytes": source.stat().st_size}}


def _manifest(source: Path, config, report, decisions, redact: list[str], named: bool) -> dict:
    """The manifest's definition; ``named``: the input (which has no Content Credentials) goes in as an
    ingredient written here, not read from the input by the library."""
    from . import __version__
    from .detect import load_model
    params = {"target": config.target, "style": config.style}
    if decisions is None:
        precision = config.cpu_precision if report.backends.get("detect", "").startswith("onnxruntime") else "fp32"
        params.update(model=config.model, model_precision=precision,
                      model_sha256=load_model(config.model).sha256(precision))
    else:  # faces found by a first run, as a reviewer decided: how many left visible, how many regions added
        params.update(faces_from="a reviewed decisions file", model=decisions.options.get("model", config.model),
                      faces_kept_visible=len(decisions.keep), regions_added=len(decisions.added))
    edited = {"action": "c2pa.edited", "description": f"{'eyes' if config.target == 'eyes' else 'faces'} obscured",
              "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "softwareAgent": {"name": "trt_anon", "version": __version__}, "parameters": params}
    redacted = [{"action": "c2pa.redacted", "reason": "c2pa.PII.present", "parameters": {"redacted": uri}}
                for uri in redact]
    manifest = {"claim_generator_info": [{"name": "trt_anon", "version": __version__}],
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [edited, *redacted]}}]}
    if redact:
        manifest["redactions"] = redact
    if named:
        manifest["ingredients"] = [{**_ingredient(source), "format": _mime(source)}]
    return manifest


def _mime(path: Path) -> str:
    import mimetypes
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _who(info: dict) -> str:
    name, org = info.get("common_name"), info.get("issuer")
    return f"{name} ({org})" if name and org else name or org or "an unnamed signer"


@dataclass
class Reading:
    """What a file's Content Credentials say (``claims``, one line each), what fails in them (``problems``:
    empty when the signature and the hash binding check out, and the signer is trusted where that was asked), and
    an input given that is not the file they name as the parent (``input_differs``: valid credentials, another
    file)."""

    state: str                   # the library's: "Trusted", "Valid" or "Invalid"
    claims: list[str]
    problems: list[str]
    input_checked: bool = False  # an input was given and compared with the parent's SHA-256
    input_differs: str = ""      # how it differs, where it does


def read(path: Path, trust: Path | None = None, input: Path | None = None) -> Reading | None:
    """Validate ``path``'s Content Credentials with the library (signature, certificate chain, hash binding to
    the file's bytes), against the trust anchors in ``trust`` (PEM) if given, and ``input`` against the parent
    ingredient's SHA-256. None when the file has none. InputError when it cannot be read at all."""
    c2pa = _c2pa()
    ext = path.suffix.lower()[1:]
    extra = {}
    if trust is not None:
        try:
            extra["trust"] = {"user_anchors": Path(trust).read_text(encoding="utf-8")}
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the trust anchors {trust}: {getattr(exc, 'strerror', None) or exc}") \
                from None
    try:
        with open(path, "rb") as f:
            reader = c2pa.Reader.try_create(ext, f, context=_context(c2pa, extra))
            if reader is None:
                return None
            store = json.loads(reader.json())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except c2pa.C2paError as exc:
        if ext not in {t.lower() for t in c2pa.Reader.get_supported_mime_types()}:
            return None  # a container the library does not read holds none it could check
        return Reading("Invalid", [], [f"the Content Credentials cannot be read: {_refused(exc)}"])
    manifests = store.get("manifests", {})
    active = manifests.get(store.get("active_manifest"), {})
    failures = store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    problems = [f"{f.get('explanation')} ({f.get('code')})" for f in failures
                if trust is not None or f.get("code") != UNTRUSTED]
    claims, checked, differs = _claims(active, manifests), False, ""
    for ingredient in active.get("ingredients", ()):
        want = (ingredient.get("metadata") or {}).get("sha256")
        if input is not None and ingredient.get("relationship") == "parentOf" and want:
            from .audit import sha256
            try:
                got = sha256(Path(input))
            except OSError as exc:
                raise InputError(f"cannot read {input}: {exc.strerror or exc}") from None
            if got != want:
                differs = f"input {input}: SHA-256 {got[:16]}... is not the parent's {want[:16]}..."
            checked = True
    return Reading(store.get("validation_state", "Invalid"), claims, problems, checked, differs)


def _claims(manifest: dict, manifests: dict, indent: str = "") -> list[str]:
    """What a manifest says, one line per fact: who signed, with what, which edits, which parent; the parent's
    own Content Credentials below it, indented, down the chain."""
    info = manifest.get("signature_info", {})
    lines = [f"{indent}signed by {_who(info)}" + (f" at {info['time']}" if info.get("time") else ", with no "
                                                  "time-stamp")]
    made = [f"{g.get('name')} {g.get('version', '')}".strip() for g in manifest.get("claim_generator_info", ())]
    if made:
        lines.append(f"{indent}made by {', '.join(made)}")
    lines += _actions(manifest, indent)
    for ingredient in manifest.get("ingredients", ()):
        meta = ingredient.get("metadata") or {}
        what = (f"the input, SHA-256 {meta['sha256']}, {meta.get('bytes', '?')} bytes" if meta.get("sha256")
                else ingredient.get("title") or ingredient.get("format") or "an ingredient")
        lines.append(f"{indent}{ingredient.get('relationship', 'ingredient')}: {what}")
        parent = manifests.get(ingredient.get("active_manifest"))
        if parent is not None and len(indent) < 16:
            failed = [f.get("code") for f in ingredient.get("validation_results", {}).get("activeManifest", {})
                      .get("failure", []) if f.get("code") != UNTRUSTED]
            lines.append(f"{indent}  with its own Content Credentials" + (
                f", which did not validate when they were added ({', '.join(failed)}):" if failed else ":"))
            lines += _claims(parent, manifests, indent + "    ")
    return lines


def _actions(manifest: dict, indent: str) -> list[str]:
    lines, redacted = [], 0
    for assertion in manifest.get("assertions", ()):
        if not assertion.get("label", "").startswith("c2pa.actions"):
            continue
        for action in assertion.get("data", {}).get("actions", ()):
            name = action.get("action", "?").removeprefix("c2pa.")
            if name == "redacted":
                redacted += 1
                continue
            if name == "opened" and not action.get("description"):
                action = {**action, "description": "the parent ingredient"}
            params = sorted((k, v) for k, v in (action.get("parameters") or {}).items() if k != "ingredients")
            agent = action.get("softwareAgent")
            agent = f"{agent.get('name')} {agent.get('version', '')}".strip() if isinstance(agent, dict) else agent
            said = [action.get("description") or action.get("digitalSourceType", "").rsplit("/", 1)[-1],
                    f"by {agent}" if agent else "", ", ".join(f"{k}={v}" for k, v in params)]
            lines.append(f"{indent}{name}: " + "; ".join(s for s in said if s) if any(said) else f"{indent}{name}")
    if redacted:
        lines.append(f"{indent}redacted: {redacted} assertion(s) of the input's own Content Credentials (pictures; "
                     "location, device or people)")
    return lines
