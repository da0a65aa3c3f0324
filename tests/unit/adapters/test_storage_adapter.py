"""Storage adapters without a network: local signed URLs, and what the S3 presigned URLs sign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from prm.adapters import storage
from prm.core import clock

SHA = "a" * 64
KEY = "0b9d6c55-1d51-4d0e-8a52-5b0c4a8e2f11/" + SHA
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


def _local(tmp_path: Path) -> storage.LocalStorage:
    return storage.LocalStorage(root=tmp_path, secret=b"k" * 32, base_url="https://prm.example.org/")


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_local_urls_verify_until_they_expire(tmp_path: Path) -> None:
    local = _local(tmp_path)
    with clock.frozen(NOW) as frozen:
        target = local.upload_target(KEY, content_type="image/png", size=10, sha256_hex=SHA, expires_in=60)
        assert target.url.startswith("https://prm.example.org/media/local/" + KEY + "?")
        assert target.expires_at == NOW + timedelta(seconds=60)
        grant = local.verify("PUT", KEY, _query(target.url))
        assert (grant.content_type, grant.size, grant.sha256_hex) == ("image/png", 10, SHA)
        frozen.advance(timedelta(seconds=61))
        with pytest.raises(storage.UrlRefused) as caught:
            local.verify("PUT", KEY, _query(target.url))
        assert caught.value.code == "url_expired"


@pytest.mark.parametrize("change", [
    {"size": "11"}, {"content_type": "text/html"}, {"sha256": "b" * 64}, {"expires": "9999999999"},
    {"signature": "0" * 64},
])
def test_a_changed_local_url_is_refused(tmp_path: Path, change: dict[str, str]) -> None:
    local = _local(tmp_path)
    target = local.upload_target(KEY, content_type="image/png", size=10, sha256_hex=SHA, expires_in=60)
    with pytest.raises(storage.UrlRefused) as caught:
        local.verify("PUT", KEY, {**_query(target.url), **change})
    assert caught.value.code == "invalid_signature"


def test_a_download_url_is_not_an_upload_url_nor_for_another_key(tmp_path: Path) -> None:
    local = _local(tmp_path)
    download = local.download_target(KEY, filename="a.png", content_type="image/png", expires_in=60)
    with pytest.raises(storage.UrlRefused):
        local.verify("PUT", KEY, _query(download.url))
    with pytest.raises(storage.UrlRefused):
        local.verify("GET", KEY.replace("a", "b"), _query(download.url))
    with pytest.raises(storage.UrlRefused):
        local.verify("GET", "../../etc/passwd", _query(download.url))
    assert local.verify("GET", KEY, _query(download.url)).filename == "a.png"


def test_local_objects_round_trip(tmp_path: Path) -> None:
    import io

    local = _local(tmp_path)
    data = b"x" * (storage.CHUNK_BYTES + 10)
    local.write(KEY, io.BytesIO(data), content_type="image/png", size=len(data), sha256_hex=SHA)
    assert local.size_of(KEY) == len(data)
    assert b"".join(local.read_chunks(KEY)) == data
    local.delete(KEY)
    assert local.size_of(KEY) is None
    with pytest.raises(storage.ObjectMissing):
        list(local.read_chunks(KEY))


def test_s3_presigned_put_signs_type_length_and_checksum() -> None:
    s3 = storage.S3Storage.connect(bucket="media", endpoint_url="http://127.0.0.1:9000", access_key_id="AK",
                                   secret_access_key="SK")
    target = s3.upload_target(KEY, content_type="application/pdf", size=1234, sha256_hex=SHA, expires_in=900)
    query = _query(target.url)
    assert urlsplit(target.url).path == f"/media/{KEY}"
    assert query["X-Amz-Expires"] == "900"
    assert set(query["X-Amz-SignedHeaders"].split(";")) == {"content-length", "content-type", "host",
                                                            "x-amz-checksum-sha256"}
    assert target.headers == {"Content-Type": "application/pdf", "Content-Length": "1234",
                              "x-amz-checksum-sha256": storage.S3Storage.checksum(SHA)}
    download = s3.download_target(KEY, filename="Informe médico.pdf", content_type="application/pdf", expires_in=300)
    query = _query(download.url)
    assert query["X-Amz-Expires"] == "300" and query["response-content-type"] == "application/pdf"
    disposition = unquote(query["response-content-disposition"])
    assert disposition.startswith('attachment; filename="Informe m_dico.pdf"; filename*=UTF-8\'\'Informe')


def test_keys_cannot_escape_the_store() -> None:
    for bad in ("../x", "/etc/passwd", "a/../../b", "a//b", "", "a\\b"):
        with pytest.raises(ValueError):
            storage.check_key(bad)
