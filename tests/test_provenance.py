"""Content Credentials (--sign): a C2PA manifest in the output, written and checked with the C2PA library itself,
signed with a certificate chain made here (a root CA, an intermediate, a signing certificate). The signed file
validates, one changed byte does not, the manifest holds no picture of the input, a photo's own Content
Credentials become the parent, and bad credentials or containers are refused before any work."""
from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path

import av
import pytest
from helpers import NoRayCounter, copied_packets
from PIL import Image
from skimage import data
from synth import Face, make_clip

import trt_anon
from trt_anon import api, provenance
from trt_anon.cli import main
from trt_anon.config import Config
from trt_anon.errors import ConfigError, OutputError

c2pa = pytest.importorskip("c2pa")  # in the [test] extra: every CI pass has it
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

# Where a picture starts: JPEG, PNG, GIF, WebP/AVI (RIFF), and ISO BMFF images (HEIC, AVIF) by their brand.
PICTURE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"ftypheic", b"ftypmif1", b"ftypavif")
C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")  # the MP4 box that holds a manifest store


def _name(org: str, cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca: bool, days=(-1, 30), eku=True):
    now = dt.datetime.now(dt.timezone.utc)
    usage = dict(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now + dt.timedelta(days=days[0])).not_valid_after(now + dt.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(**usage), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False))
    if not ca and eku:  # what C2PA asks of a signing certificate: an EKU such as emailProtection
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


def _pem(*objs) -> bytes:
    out = b""
    for o in objs:
        out += o.public_bytes(serialization.Encoding.PEM) if isinstance(o, x509.Certificate) else o.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return out


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A newsroom's chain (root -> intermediate -> signer), a camera maker's, and the bad credentials."""
    d = tmp_path_factory.mktemp("pki")
    root_key, mid_key, key, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert(_name("Test Newsroom", "Newsroom Root CA"), root_key, _name("Test Newsroom", "Newsroom Root CA"),
                 root_key, ca=True, days=(-2, 365))
    mid = _cert(_name("Test Newsroom", "Newsroom Signing CA"), mid_key, root.subject, root_key, ca=True,
                days=(-2, 365))
    signer = _name("Test Newsroom", "Anonymizing Desk")

    def leaf(**kw):
        return _cert(signer, key, mid.subject, mid_key, ca=False, **kw)

    files = {"root.pem": _pem(root), "chain.pem": _pem(leaf(), mid), "key.pem": _pem(key),
             "expired.pem": _pem(leaf(days=(-30, -1)), mid), "no_eku.pem": _pem(leaf(eku=False), mid),
             "root_key.pem": _pem(root_key), "other_key.pem": _pem(other),
             "encrypted_key.pem": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.BestAvailableEncryption(b"secret"))}
    cam_key = ec.generate_private_key(ec.SECP256R1())
    cam_root = _cert(_name("Test Cameras", "Camera Root"), cam_key, _name("Test Cameras", "Camera Root"), cam_key,
                     ca=True, days=(-2, 365))
    cam_leaf_key = ec.generate_private_key(ec.SECP256R1())
    cam = _cert(_name("Test Cameras", "Camera 0042"), cam_leaf_key, cam_root.subject, cam_key, ca=False)
    files.update({"camera.pem": _pem(cam, cam_root), "camera_key.pem": _pem(cam_leaf_key)})
    for name, body in files.items():
        (d / name).write_bytes(body)
    return {name.removesuffix(".pem"): d / name for name in files}


def sign_of(pki, cert="chain", key="key") -> tuple[str, str]:
    return str(pki[cert]), str(pki[key])


def store_of(path: Path, trust: Path | None = None) -> dict:
    """The file's manifest store as the library reads and validates it (trusting ``trust``'s root)."""
    settings = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust is not None:
        settings["trust"] = {"user_anchors": trust.read_text()}
    with open(path, "rb") as f:
        reader = c2pa.Reader(path.suffix[1:], f, context=c2pa.Context.from_dict(settings))
        return json.loads(reader.json())


def active(store: dict) -> dict:
    return store["manifests"][store["active_manifest"]]


def failures(store: dict) -> list[str]:
    return [f["code"] for f in store["validation_results"]["activeManifest"]["failure"]]


def mp4_manifest_bytes(path: Path) -> bytes:
    """The C2PA box of an MP4/MOV: its top-level ``uuid`` box with C2PA's UUID."""
    raw, pos = path.read_bytes(), 0
    while pos + 8 <= len(raw):
        size, kind = int.from_bytes(raw[pos:pos + 4], "big"), raw[pos + 4:pos + 8]
        if size == 1:
            size = int.from_bytes(raw[pos + 8:pos + 16], "big")
        if kind == b"uuid" and raw[pos + 8:pos + 24] == C2PA_UUID:
            return raw[pos:pos + size]
        pos += size or len(raw)
    raise AssertionError(f"{path} has no C2PA box")


def astronaut(path: Path) -> Path:
    Image.fromarray(data.astronaut()).save(path, quality=92)
    return path


def camera_capture(pki, src: Path, dst: Path) -> dict:
    """What a C2PA camera writes: a signed capture with its thumbnail (a picture of the scene: the faces) and an
    EXIF assertion with the GPS position; then an editor's manifest on it, with its own claim and ingredient
    thumbnails. Returns the store as read."""
    ctx = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False}})  # the library's defaults: thumbnails

    def signer():
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", pki["camera"].read_bytes(),
                                                         pki["camera_key"].read_bytes(), None))

    exif = {"@context": {"exif": "http://ns.adobe.com/exif/1.0/"}, "exif:GPSLatitude": "52,31.2N",
            "exif:GPSLongitude": "13,24.1E", "exif:BodySerialNumber": "F2LX81"}
    cam = c2pa.Builder({"assertions": [{"label": "stds.exif", "data": exif}]}, ctx)
    cam.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE)
    captured = io.BytesIO()
    with open(src, "rb") as f:
        cam.sign(signer(), "jpg", f, captured)
    editor = c2pa.Builder({}, ctx)
    editor.set_intent(c2pa.C2paBuilderIntent.EDIT)
    captured.seek(0)
    with open(dst, "w+b") as out:
        editor.sign(signer(), "jpg", captured, out)
    store = store_of(dst)
    labels = [a for m in store["manifests"].values() for a in ([m["thumbnail"]] if "thumbnail" in m else [])]
    assert len(store["manifests"]) == 2 and labels, "the camera's Content Credentials hold thumbnails"
    return store


def thumbnails_of(path: Path, store: dict) -> list[bytes]:
    """The pictures inside ``path``'s manifests, as the library gives them out."""
    out = []
    with open(path, "rb") as f:
        reader = c2pa.Reader("jpg", f)
        for m in store["manifests"].values():
            for holder in (m, *m.get("ingredients", ())):
                if "thumbnail" in holder:
                    buf = io.BytesIO()
                    reader.resource_to_stream(holder["thumbnail"]["identifier"], buf)
                    out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("sign") / "walk.mp4", 320, 180, frames=40,
                     faces=[Face(64, (40, 50), (2.5, 0.3))])


def test_signed_video_validates_and_says_what_was_done(clip, pki, tmp_path, capsys, monkeypatch):
    real, plain = provenance.sign, tmp_path / "plain.mp4"

    def keep_unsigned(written, job, report):
        shutil.copyfile(written, plain)  # this run's output as it was before its manifest went in
        real(written, job, report)

    monkeypatch.setattr(provenance, "sign", keep_unsigned)
    report = trt_anon.process(clip.path, tmp_path / "signed.mp4", backend="cpu", sign=sign_of(pki))
    out = Path(report.output)
    assert report.signed == {"signer": "Anonymizing Desk (Test Newsroom)", "parent": None, "redacted": 0}
    assert "Content Credentials signed by Anonymizing Desk" in report.summary()
    store = store_of(out, trust=pki["root"])
    assert store["validation_state"] == "Trusted" and not failures(store)
    assert store_of(out)["validation_state"] == "Valid" and failures(store_of(out)) == [provenance.UNTRUSTED]
    m = active(store)
    assert len(store["manifests"]) == 1 and "title" not in m  # no file names
    actions = [a for x in m["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]
    edited = next(a for a in actions if a["action"] == "c2pa.edited")
    assert edited["description"] == "faces obscured"
    assert edited["softwareAgent"] == {"name": "trt_anon", "version": trt_anon.__version__}
    assert edited["parameters"]["model"] == "centerface" and edited["parameters"]["style"] == "mosaic"
    assert len(edited["parameters"]["model_sha256"]) == 64 and edited["parameters"]["model_precision"] == "int8"
    (ingredient,) = m["ingredients"]
    assert ingredient["relationship"] == "parentOf" and "title" not in ingredient and "thumbnail" not in ingredient
    from trt_anon.audit import sha256
    assert ingredient["metadata"] == {"sha256": sha256(clip.path), "bytes": clip.path.stat().st_size}
    # a manifest, and nothing else changed: the frames, times, audio and metadata of the unsigned output
    with av.open(str(out)) as a, av.open(str(plain)) as b:
        assert [(f.pts, f.to_ndarray().tobytes()) for f in a.decode(video=0)] == \
            [(f.pts, f.to_ndarray().tobytes()) for f in b.decode(video=0)]
        assert a.metadata == b.metadata and [s.metadata for s in a.streams] == [s.metadata for s in b.streams]
    assert copied_packets(out) == copied_packets(plain) and copied_packets(out)[0]
    box = mp4_manifest_bytes(out)
    assert not any(magic in box for magic in PICTURE_MAGIC), "a picture in the manifest"

    capsys.readouterr()
    assert main(["verify", str(out), "--input", str(clip.path)]) == 0
    said = capsys.readouterr().out
    assert "valid: signature and hash binding check out" in said and "signed by Anonymizing Desk" in said
    assert "edited: faces obscured; by trt_anon" in said and f"SHA-256 {sha256(clip.path)}" in said
    assert main(["verify", str(out), "--trust", str(pki["root"])]) == 0
    assert "valid and trusted" in capsys.readouterr().out
    assert main(["verify", str(out), "--input", str(plain)]) == 1  # not the input the manifest names
    said = capsys.readouterr()  # the credentials still validate: it is the input that differs
    assert "valid: signature and hash binding check out" in said.out and "INVALID" not in said.err
    assert "MISMATCH: input" in said.err and "is not the parent's" in said.err


def test_one_changed_byte_fails_validation(clip, pki, tmp_path, capsys):
    out = Path(trt_anon.process(clip.path, tmp_path / "s.mp4", backend="cpu", sign=sign_of(pki)).output)
    raw = bytearray(out.read_bytes())
    box = mp4_manifest_bytes(out)
    at = raw.index(b"mdat") + 400  # inside the video, not the manifest
    assert raw.index(box) + len(box) < at or at < raw.index(box)
    raw[at] ^= 0x01
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(raw)
    store = store_of(bad, trust=pki["root"])
    assert store["validation_state"] == "Invalid" and any("mismatch" in code for code in failures(store))
    capsys.readouterr()
    assert main(["verify", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "INVALID Content Credentials" in err and "mismatch" in err

    photo = Path(trt_anon.process(astronaut(tmp_path / "a.jpg"), sign=sign_of(pki)).output)
    raw = bytearray(photo.read_bytes())
    raw[-100] ^= 0x01  # in the picture's entropy-coded data, before EOI
    photo.write_bytes(raw)
    assert store_of(photo)["validation_state"] == "Invalid"
    assert main(["verify", str(photo)]) == 1


@pytest.mark.parametrize("keep_metadata", [False, True])
def test_a_photo_keeps_its_credentials_as_parent_without_any_picture_of_the_input(pki, tmp_path, keep_metadata):
    src = tmp_path / "capture.jpg"
    theirs = camera_capture(pki, astronaut(tmp_path / "raw.jpg"), src)
    pictures = thumbnails_of(src, theirs)
    assert pictures and all(p.startswith(b"\xff\xd8\xff") for p in pictures)
    report = trt_anon.process(src, tmp_path / "out.jpg", sign=sign_of(pki), keep_metadata=keep_metadata)
    out = Path(report.output)
    raw = out.read_bytes()
    # no picture of the input anywhere: the file holds one JPEG (the anonymized photo), none of the thumbnails
    assert raw.count(b"\xff\xd8\xff") == 1 and not any(p[:2000] in raw for p in pictures)
    assert not any(magic in raw for magic in PICTURE_MAGIC[1:])
    store = store_of(out, trust=pki["root"])
    assert store["validation_state"] != "Invalid" and failures(store) == []
    m = active(store)
    assert len(store["manifests"]) == 3  # ours, and the editor's and the camera's, chained
    (ingredient,) = m["ingredients"]
    assert ingredient["relationship"] == "parentOf" and ingredient["active_manifest"] == theirs["active_manifest"]
    from trt_anon.audit import sha256
    assert ingredient["metadata"]["sha256"] == sha256(src)
    for manifest in store["manifests"].values():
        assert "thumbnail" not in manifest and all("thumbnail" not in i for i in manifest.get("ingredients", ()))
    camera = next(x for label, x in store["manifests"].items() if label not in (store["active_manifest"],
                                                                                  theirs["active_manifest"]))
    has_exif = any(a["label"] == "stds.exif" for a in camera["assertions"])
    assert has_exif == keep_metadata, "the capture's GPS and serial go unless --keep-metadata"
    assert report.signed["parent"] == theirs["active_manifest"]
    assert report.signed["redacted"] == (3 if keep_metadata else 4)  # three thumbnails (+ the EXIF assertion)
    assert main(["verify", str(out)]) == 0


def test_bad_credentials_are_one_line_errors_before_any_work(clip, pki, tmp_path, monkeypatch, capsys):
    def no_work(*a, **k):
        raise AssertionError("the run started")

    monkeypatch.setattr(api, "_video", no_work)
    monkeypatch.setattr(api, "_photo", no_work)
    cases = {("chain", "other_key"): "does not match|not the key of",
             ("expired", "key"): "expired on",
             ("no_eku", "key"): "certificate is invalid for C2PA",
             ("root", "root_key"): "self-signed",  # a CA's own certificate: C2PA wants one a CA issued
             ("chain", "encrypted_key"): "is encrypted",
             ("key", "key"): "not a PEM certificate",
             ("chain", "chain"): "not a PEM private key"}
    import re
    key_body = pki["key"].read_text().splitlines()[1]
    for (cert, key), why in cases.items():
        capsys.readouterr()
        code = main([str(clip.path), "-o", str(tmp_path / "out.mp4"), "--sign", str(pki[cert]), str(pki[key]), "-q"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and re.search(why, err), (cert, key, err)
        assert key_body not in err
        assert not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="cannot read"):
        trt_anon.process(clip.path, tmp_path / "o.mp4", sign=(str(tmp_path / "none.pem"), str(pki["key"])))
    with pytest.raises(ConfigError, match="sign must be"):
        Config(sign=("a", "b", "c"))
    assert not list(tmp_path.iterdir())


def test_containers_the_library_cannot_sign_are_refused_before_any_work(clip, pki, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(api, "_video", lambda *a, **k: pytest.fail("the run started"))
    for name in ("out.mkv", "out.webm"):
        with pytest.raises(OutputError, match=r"cannot sign out\.\w+: the C2PA library writes Content Credentials "
                                              r"into .*\.mp4"):
            trt_anon.process(clip.path, tmp_path / name, sign=sign_of(pki))
    assert main([str(clip.path), "-o", str(tmp_path / "x.mkv"), "--sign", *sign_of(pki)]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["--sign", *sign_of(pki), str(clip.path), "--live", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "--sign is for files" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_signature_that_fails_leaves_nothing(clip, pki, tmp_path, monkeypatch):
    """Accepted before the run, refused at its end (the certificate expired meanwhile, say): nothing written."""
    def refuse(self, *a, **k):
        raise c2pa.C2paError("Signature: the certificate was not valid at time of signing")

    monkeypatch.setattr(provenance, "_accepted", lambda *a: None)  # the credentials were accepted before the run
    monkeypatch.setattr(c2pa.Builder, "sign", refuse)
    with pytest.raises(OutputError, match=r"signing \S+out.mp4 failed: the certificate was not valid at time"):
        trt_anon.process(clip.path, tmp_path / "out.mp4", sign=sign_of(pki), json_path=tmp_path / "out.json")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("ext", sorted(provenance.formats()))
def test_every_container_the_library_signs(ext, clip, pki, tmp_path):
    from trt_anon.media import stills
    if ext in stills.FORMATS:
        if stills.missing(ext):
            pytest.skip(stills.missing(ext))
        src = astronaut(tmp_path / "in.jpg")
    else:
        src = clip.path
    out = Path(trt_anon.process(src, tmp_path / f"out{ext}", sign=sign_of(pki), backend="cpu").output)
    store = store_of(out, trust=pki["root"])
    assert store["validation_state"] == "Trusted", failures(store)
    if ext in stills.FORMATS:
        assert Image.open(out).size == (512, 512)
    else:
        with av.open(str(out)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 40


def test_a_settings_file_signs_too(clip, pki, tmp_path):
    """The C2PA library's own settings format: signer.local with the PEMs inline (or files beside it)."""
    settings = tmp_path / "c2pa.json"
    settings.write_text(json.dumps({"signer": {"local": {
        "alg": "es256", "sign_cert": pki["chain"].read_text(), "private_key": str(pki["key"])}}}))
    out = Path(trt_anon.process(astronaut(tmp_path / "a.png"), sign=str(settings)).output)
    assert store_of(out, trust=pki["root"])["validation_state"] == "Trusted"
    assert main([str(tmp_path / "a.png"), "--sign", str(settings), "-o", str(tmp_path / "b.png"), "-q"]) == 0
    settings.write_text(json.dumps({"signer": {"remote": {"url": "https://example.invalid"}}}))
    with pytest.raises(ConfigError, match="signer.local"):
        trt_anon.process(tmp_path / "a.png", tmp_path / "c.png", sign=str(settings))


def test_segments_joined_are_signed_once(pki, tmp_path, monkeypatch):
    """Ray's pieces are never signed; their join is, as a whole, with the input as its parent."""
    from trt_anon import scale
    from trt_anon.plan import plan

    src = make_clip(tmp_path / "long.mp4", 320, 180, frames=130, audio=0, keyint=25,
                    faces=[Face(50, (20, 40), (1.5, 0.2))]).path
    job = plan(src, tmp_path / "joined.mp4", Config(backend="cpu", sign=sign_of(pki)))
    segs = scale.plan_segments(job, 40)
    assert len(segs) == 3

    monkeypatch.setattr(scale, "_where", lambda: {})
    parts = [scale.run_segment(job, s, str(tmp_path / f"{s.number}.mp4"), NoRayCounter()) for s in segs]
    for p in parts:
        with open(p["piece"], "rb") as f:
            assert c2pa.Reader.try_create("mp4", f) is None, "a piece was signed"
    report = scale.join(job, *parts)
    store = store_of(job.output, trust=pki["root"])
    assert store["validation_state"] == "Trusted" and len(store["manifests"]) == 1
    from trt_anon.audit import sha256
    assert active(store)["ingredients"][0]["metadata"]["sha256"] == sha256(src)
    assert report.signed["signer"] == "Anonymizing Desk (Test Newsroom)"
    with av.open(str(job.output)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 130
    stamp = json.dumps(scale._stamp(src, job.config))  # --skip-existing's sidecar: which certificate, no key path
    assert str(pki["key"]) not in stamp and json.loads(stamp)["options"]["sign"] == sha256(pki["chain"])


def test_a_reviewed_render_is_signed_once_with_the_input_as_parent(clip, pki, tmp_path, capsys):
    first = tmp_path / "first.mp4"
    trt_anon.process(clip.path, first, json_path=str(tmp_path / "first.json"), sign=sign_of(pki))
    doc = json.loads((tmp_path / "first.json").read_text())
    assert "sign" not in doc["audit"]["options"]  # where the key lives is not written
    assert str(pki["key"]) not in (tmp_path / "first.json").read_text()
    track = doc["tracks"][0]["id"]
    doc["tracks"][0]["action"] = "keep"
    (tmp_path / "decided.json").write_text(json.dumps(doc))
    out = tmp_path / "again.mp4"
    report = trt_anon.process(clip.path, out, decisions_path=str(tmp_path / "decided.json"), sign=sign_of(pki),
                              json_path=str(tmp_path / "again.json"))
    store = store_of(out, trust=pki["root"])
    assert store["validation_state"] == "Trusted" and len(store["manifests"]) == 1  # not chained to `first`
    from trt_anon.audit import sha256
    m = active(store)
    assert m["ingredients"][0]["metadata"]["sha256"] == sha256(clip.path)
    edited = next(a for x in m["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]
                  if a["action"] == "c2pa.edited")
    assert edited["parameters"]["faces_kept_visible"] == 1 and track is not None
    assert edited["parameters"]["faces_from"] == "a reviewed decisions file" and "model_sha256" not in \
        edited["parameters"], "nothing was detected in this run"
    # the record's hash is the signed file's: verify checks both, the record and the credentials
    assert report.signed and main(["verify", str(out), str(tmp_path / "again.json"), "--input", str(clip.path)]) == 0
    said = capsys.readouterr().out
    assert "Content Credentials of" in said and "match the record" in said


def test_verify_needs_credentials_or_a_record(clip, pki, tmp_path, capsys):
    plain = trt_anon.process(clip.path, tmp_path / "plain.mp4", backend="cpu")
    assert main(["verify", plain.output]) == 2
    assert "holds no Content Credentials" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.mp4")]) == 2
    photo = astronaut(tmp_path / "cam.jpg")
    foreign = tmp_path / "foreign.jpg"  # Content Credentials that name no input by its hash (a camera's)
    with open(photo, "rb") as src, open(foreign, "w+b") as dst:
        builder = c2pa.Builder({}, c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
        builder.set_intent(c2pa.C2paBuilderIntent.CREATE, c2pa.C2paDigitalSourceType.DIGITAL_CAPTURE)
        builder.sign(c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", pki["chain"].read_bytes(),
                                                               pki["key"].read_bytes(), None)), "jpg", src, dst)
    capsys.readouterr()
    assert main(["verify", str(foreign)]) == 0
    assert "created: digitalCapture" in capsys.readouterr().out
    assert main(["verify", str(foreign), "--input", str(photo)]) == 2
    assert "name no input by its SHA-256" in capsys.readouterr().err
