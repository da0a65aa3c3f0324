"""The media allowlist and verification: pure, no I/O."""

from __future__ import annotations

import pytest

from prm.media import verification as v
from tests.fixtures import media_samples as samples


def _digest(data: bytes, chunk: int = 1000) -> v.Digest:
    digest = v.Digest()
    for i in range(0, len(data), chunk):
        digest.update(data[i:i + chunk])
    return digest


@pytest.mark.parametrize("content_type", sorted(samples.ALLOWED))
def test_every_allowed_type_is_recognised_from_its_bytes(content_type: str) -> None:
    data = samples.ALLOWED[content_type]()
    kind = v.verify(declared_type=content_type, declared_size=len(data), declared_sha256=samples.sha256(data),
                    digest=_digest(data), cap=10**9)
    assert kind.content_type == content_type


@pytest.mark.parametrize(("make", "code"), [(samples.exe, "type_not_allowed"), (samples.svg, "unrecognised_content"),
                                            (samples.html, "unrecognised_content")])
def test_script_and_executables_are_refused_whatever_they_claim(make: object, code: str) -> None:
    data = make()  # type: ignore[operator]
    with pytest.raises(v.Rejected) as caught:
        v.verify(declared_type="application/pdf", declared_size=len(data), declared_sha256=None,
                 digest=_digest(data), cap=10**9)
    assert caught.value.code == code and caught.value.status == 422


def test_declared_type_must_be_the_sniffed_one_but_heic_and_heif_are_one_family() -> None:
    with pytest.raises(v.Rejected) as caught:
        v.verify(declared_type="image/jpeg", declared_size=None, declared_sha256=None,
                 digest=_digest(samples.png()), cap=10**9)
    assert caught.value.code == "type_mismatch"
    kind = v.verify(declared_type="image/heic", declared_size=None, declared_sha256=None,
                    digest=_digest(samples.heif()), cap=10**9)
    assert kind.content_type == "image/heif"


def test_size_and_checksum_are_checked_before_the_type() -> None:
    data = samples.pdf(3000)
    with pytest.raises(v.Rejected) as caught:
        v.verify(declared_type="application/pdf", declared_size=2999, declared_sha256=None, digest=_digest(data),
                 cap=10**9)
    assert caught.value.code == "size_mismatch"
    with pytest.raises(v.Rejected) as caught:
        v.verify(declared_type="application/pdf", declared_size=3000, declared_sha256="0" * 64,
                 digest=_digest(data), cap=10**9)
    assert caught.value.code == "checksum_mismatch"
    with pytest.raises(v.Rejected) as caught:
        v.verify(declared_type="application/pdf", declared_size=3000, declared_sha256=None, digest=_digest(data),
                 cap=2000)
    assert (caught.value.code, caught.value.status) == ("file_too_large", 413)


def test_per_type_limits_and_the_global_cap() -> None:
    jpeg = v.kind_of("image/jpg")
    v.check_size(jpeg, 20 * v.MiB, cap=10**9)
    with pytest.raises(v.Rejected) as caught:
        v.check_size(jpeg, 20 * v.MiB + 1, cap=10**9)
    assert caught.value.status == 413 and caught.value.field == "size_bytes"
    assert v.size_limit(v.kind_of("application/dicom"), cap=100 * v.MiB) == 100 * v.MiB


def test_declared_types_are_canonicalised_and_the_rest_refused() -> None:
    assert v.kind_of("Audio/OGG; codecs=opus").content_type == "audio/ogg"
    assert v.kind_of("audio/x-m4a").content_type == "audio/mp4"
    assert v.kind_of("audio/mp3").content_type == "audio/mpeg"
    for refused in ("image/svg+xml", "text/html", "application/octet-stream", "application/zip", ""):
        with pytest.raises(v.Rejected) as caught:
            v.kind_of(refused)
        assert caught.value.code == "type_not_allowed" and caught.value.field == "content_type"


def test_digest_keeps_only_the_head() -> None:
    data = samples.pdf(50_000)
    digest = _digest(data, chunk=4096)
    assert digest.size == 50_000 and digest.hexdigest() == samples.sha256(data)
    assert digest.head == data[:v.HEAD_BYTES]


@pytest.mark.parametrize(("name", "content_type", "expected"), [
    ("letter.pdf", "application/pdf", "letter.pdf"),
    ("../../etc/passwd", "application/pdf", "passwd.pdf"),
    ('in"voice\r\n.html', "application/pdf", "in_voice_.html.pdf"),
    ("photo.JPEG", "image/jpeg", "photo.JPEG"),
    ("IMG.heif", "image/heic", "IMG.heif"),
    ("...", "image/png", "file.png"),
    ("x" * 300 + ".pdf", "application/pdf", "x" * 116 + ".pdf"),
])
def test_safe_filename(name: str, content_type: str, expected: str) -> None:
    assert v.safe_filename(name, v.kind_of(content_type)) == expected


def test_sha256_must_be_64_hex_digits() -> None:
    assert v.check_sha256(" " + "AB" * 32 + " ") == "ab" * 32
    with pytest.raises(v.Rejected):
        v.check_sha256("ab" * 31)
