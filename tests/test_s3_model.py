"""Model download from S3 (MODEL_S3_URI) against a real S3 API server on loopback (moto's
ThreadedMotoServer), reached through AWS_ENDPOINT_URL_S3 exactly as in Lambda: no patching.
"""

from __future__ import annotations

import importlib
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from conftest import SERVING_FILES, reload_app, serving_v2_event

from lambda_handler.files import sha256_file
from lambda_handler.manifest import ModelError
from lambda_handler.s3_model import fetch_model, fetch_model_within, parse_s3_uri
from lambda_handler.service import Service
from lambda_handler.settings import Settings

ABSTRACT = "We train convolutional neural networks for object detection in images."


def upload(s3, bucket: str, prefix: str, model_dir: Path) -> str:
    for path in sorted(model_dir.iterdir()):
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.name}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


def load(uri: str, cache: Path) -> Service:
    return Service.from_settings(Settings(model_s3_uri=uri, model_cache_dir=cache))


def classify(service: Service) -> tuple[int, dict]:
    answer = service.handle(serving_v2_event("POST", "/classify", {"abstract": ABSTRACT}), None)
    return answer["statusCode"], json.loads(answer["body"])


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_parse_s3_uri():
    assert parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ModelError, match="s3://bucket/prefix"):
        parse_s3_uri("https://bucket/a")


def test_download_verifies_and_serves_like_the_local_directory(
    s3, bucket, serving_model_dir, serving_service, tmp_path
):
    uri = upload(s3, bucket, "models/tiny", serving_model_dir)
    service = load(uri, tmp_path)
    status, body = classify(service)
    assert status == 200
    assert (status, body) == classify(serving_service)
    [copy] = [p for p in tmp_path.iterdir()]
    assert copy.name.startswith("model-2026.11.25-tiny-")
    names = sorted((*SERVING_FILES, "manifest.json"))
    assert listing(tmp_path) == [copy.name, *(f"{copy.name}/{n}" for n in names)]
    for name in names:
        assert sha256_file(copy / name) == sha256_file(serving_model_dir / name)


def test_app_cold_start_reads_model_s3_uri_and_the_endpoint_from_env(
    s3, bucket, serving_model_dir, tmp_path, monkeypatch
):
    uri = upload(s3, bucket, "prod", serving_model_dir)
    monkeypatch.setenv("MODEL_S3_URI", uri + "/")
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "not-used"))
    app = reload_app(monkeypatch)
    answer = app.handler(serving_v2_event("GET", "/health"), None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["model"]["version"] == "2026.11.25-tiny"
    monkeypatch.delenv("MODEL_S3_URI")
    importlib.reload(app)


def test_sha_mismatch_answers_503_and_keeps_no_partial_file(
    s3, bucket, make_serving_model_dir, tmp_path, capsys
):
    model_dir = make_serving_model_dir()
    uri = upload(s3, bucket, "bad", model_dir)
    labels = (model_dir / "labels.json").read_bytes().replace(b"Robotics", b"Roboticz")
    s3.put_object(Bucket=bucket, Key="bad/labels.json", Body=labels)  # manifest unchanged
    cache = tmp_path / "cache"
    capsys.readouterr()
    service = load(uri, cache)
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["event"] == "model_load_failed" and record["source"] == uri
    assert "labels.json downloaded from S3 does not match its sha256" in record["reason"]
    status, body = classify(service)
    assert status == 503 and body["error"] == "model_unavailable"
    assert "labels.json downloaded from S3 does not match its sha256" in body["message"]
    [copy] = list(cache.iterdir())
    names = listing(copy)
    assert "labels.json" not in names and "manifest.json" not in names
    assert not [name for name in names if name.startswith(".") or name.endswith(".part")]
    # a size mismatch (object larger than the manifest says) is refused the same way
    s3.put_object(Bucket=bucket, Key="bad/labels.json", Body=labels + b" " * 10)
    with pytest.raises(ModelError, match="different size"):
        fetch_model(uri, cache)
    assert "labels.json" not in listing(copy)


def test_missing_objects_answer_503(s3, bucket, serving_model_dir, tmp_path):
    uri = upload(s3, bucket, "partial", serving_model_dir)
    s3.delete_object(Bucket=bucket, Key="partial/tokenizer.json")
    status, body = classify(load(uri, tmp_path / "a"))
    assert status == 503
    assert "no model: tokenizer.json is missing from the model's S3 location" in body["message"]
    status, body = classify(load(f"s3://{bucket}/nothing-here", tmp_path / "b"))
    assert status == 503 and "manifest.json is missing" in body["message"]
    status, body = classify(load(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", tmp_path / "c"))
    assert status == 503 and "manifest.json" in body["message"]
    status, body = classify(load("http://not-s3", tmp_path / "d"))
    assert status == 503 and "MODEL_S3_URI must look like" in body["message"]


def test_warm_reuse_needs_only_the_manifest(s3, bucket, serving_model_dir, tmp_path):
    uri = upload(s3, bucket, "warm", serving_model_dir)
    first = fetch_model(uri, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    for name in ("model.onnx", "tokenizer.json", "labels.json"):
        s3.delete_object(Bucket=bucket, Key=f"warm/{name}")
    assert fetch_model(uri, tmp_path) == first  # a re-import: only manifest.json is read
    assert {p.name: p.stat().st_mtime_ns for p in first.iterdir()} == stamps
    assert classify(load(uri, tmp_path))[0] == 200


def test_interrupted_or_corrupt_cache_is_completed_and_repaired(
    s3, bucket, serving_model_dir, tmp_path
):
    uri = upload(s3, bucket, "repair", serving_model_dir)
    copy = fetch_model(uri, tmp_path)
    (copy / "manifest.json").unlink()  # as if the cold start died before finishing
    (copy / "labels.json").unlink()
    (copy / "tokenizer.json").write_text("corrupted")
    model_stamp = (copy / "model.onnx").stat().st_mtime_ns
    s3.delete_object(Bucket=bucket, Key="repair/model.onnx")  # still verified in the cache
    assert fetch_model(uri, tmp_path) == copy
    assert (copy / "model.onnx").stat().st_mtime_ns == model_stamp
    for name in ("tokenizer.json", "labels.json", "manifest.json"):
        assert sha256_file(copy / name) == sha256_file(serving_model_dir / name)


@pytest.mark.parametrize("damage", ["deleted", "same size, other bytes"])
def test_a_marked_copy_damaged_later_is_repaired_at_the_next_cold_start(
    s3, bucket, serving_model_dir, tmp_path, damage
):
    # e.g. another cold start sharing the cache, or a disk error: S3 still holds a good copy
    uri = upload(s3, bucket, "later", serving_model_dir)
    copy = fetch_model(uri, tmp_path)
    labels = copy / "labels.json"
    if damage == "deleted":
        labels.unlink()
    else:
        data = bytearray(labels.read_bytes())
        data[-2] ^= 1
        labels.write_bytes(bytes(data))
    assert classify(load(uri, tmp_path))[0] == 200
    assert sha256_file(labels) == sha256_file(serving_model_dir / "labels.json")


class RacingClient:
    """Another cold start writes `name`'s verified copy while this one downloads it, and
    this one's download then fails."""

    def __init__(self, client, cache: Path, good: Path, name: str) -> None:
        self.client, self.cache, self.good, self.name = client, cache, good, name

    def get_object(self, Bucket: str, Key: str) -> dict:  # boto3's argument names
        if not Key.endswith(self.name):
            return self.client.get_object(Bucket=Bucket, Key=Key)
        from botocore.exceptions import ReadTimeoutError

        for copy in self.cache.iterdir():  # the other cold start finishes first
            (copy / self.name).write_bytes((self.good / self.name).read_bytes())
        return {"Body": Body(error=ReadTimeoutError(endpoint_url="x"))}


def test_a_failed_download_leaves_another_cold_starts_verified_file(
    s3, bucket, serving_model_dir, tmp_path
):
    uri = upload(s3, bucket, "shared", serving_model_dir)
    copy = fetch_model(uri, tmp_path)
    (copy / "manifest.json").unlink()  # this cold start finds the copy unmarked
    (copy / "model.onnx").unlink()
    client = RacingClient(s3, tmp_path, serving_model_dir, "model.onnx")
    with pytest.raises(ModelError, match=r"cannot download model\.onnx"):
        fetch_model(uri, tmp_path, client)
    assert sha256_file(copy / "model.onnx") == sha256_file(serving_model_dir / "model.onnx")
    assert not list(copy.glob(".*.part"))


def test_a_full_disk_at_the_manifest_is_a_clear_503(
    s3, bucket, serving_model_dir, tmp_path, monkeypatch
):
    from lambda_handler import s3_model

    uri = upload(s3, bucket, "full", serving_model_dir)

    def full(path, data):
        if path.name == "manifest.json":
            raise OSError(28, "No space left on device", str(path))
        return write(path, data)

    write = s3_model.write_bytes_atomic
    monkeypatch.setattr(s3_model, "write_bytes_atomic", full)
    status, body = classify(load(uri, tmp_path))
    assert status == 503 and body["message"].endswith(
        "cannot write manifest.json to the model cache (OSError: No space left on device)"
    )
    assert str(tmp_path) not in body["message"]


def test_a_new_upload_gets_a_new_cache_directory(
    s3, bucket, make_serving_model_dir, serving_model_dir, tmp_path
):
    from conftest import write_serving_manifest

    uri = upload(s3, bucket, "v", serving_model_dir)
    old = fetch_model(uri, tmp_path)
    newer = make_serving_model_dir("newer")
    write_serving_manifest(newer, model={"name": "tiny-test-lstm", "version": "2026.12.01-new"})
    upload(s3, bucket, "v", newer)
    new = fetch_model(uri, tmp_path)
    assert new != old and new.name.startswith("model-2026.12.01-new-")
    assert classify(load(uri, tmp_path))[1]["model"]["version"] == "2026.12.01-new"


def test_unreachable_endpoint_answers_503(s3, monkeypatch, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    status, body = classify(load("s3://bucket/model", tmp_path))
    assert status == 503
    assert "cannot download manifest.json from S3 (EndpointConnectionError)" in body["message"]


class Body:
    """An S3 object body that holds `data`, or fails with `error` when read."""

    def __init__(self, data: bytes = b"", error: BaseException | None = None) -> None:
        self.data, self.error, self.closed = data, error, False

    def close(self) -> None:
        self.closed = True

    def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data

    def iter_chunks(self, size: int):
        yield self.read()


class FlakyClient:
    """An S3 client whose downloads fail with `error`, except manifest.json when given."""

    def __init__(self, error: BaseException, manifest: bytes | None = None) -> None:
        self.error, self.manifest, self.bodies = error, manifest, []

    def get_object(self, Bucket: str, Key: str) -> dict:  # boto3's argument names
        if Key.endswith("manifest.json") and self.manifest is not None:
            self.bodies.append(Body(self.manifest))
        else:
            self.bodies.append(Body(error=self.error))
        return {"Body": self.bodies[-1]}


@pytest.mark.parametrize("read_fails_on", ["manifest.json", "model.onnx"])
def test_a_failed_download_names_no_bucket_url_or_local_path(
    serving_model_dir, tmp_path, read_fails_on
):
    # the ModelError text is also the public 503 body
    from botocore.exceptions import ReadTimeoutError

    url = "https://private-bucket.s3.eu-west-1.amazonaws.com/models/prod/model.onnx"
    manifest = (serving_model_dir / "manifest.json").read_bytes()
    for error, shown in (
        (ReadTimeoutError(endpoint_url=url), "(ReadTimeoutError)"),
        (OSError(28, "No space left on device", "/var/task/secret/x.part"), "device)"),
    ):
        client = FlakyClient(error, None if read_fails_on == "manifest.json" else manifest)
        with pytest.raises(ModelError) as caught:
            fetch_model("s3://private-bucket/models/prod", tmp_path, client)
        message = str(caught.value)
        assert message.startswith(f"cannot download {read_fails_on} from S3") and shown in message
        assert "private-bucket" not in message and "/var/task" not in message
        assert client.bodies and all(body.closed for body in client.bodies)  # no leaked socket


class StalledClient:
    """An S3 client whose every request hangs (for `seconds`), as a stalled connection does."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def get_object(self, Bucket: str, Key: str) -> dict:  # boto3's argument names
        time.sleep(self.seconds)
        raise AssertionError("the fetch should have been given up by now")


def test_a_stalled_s3_ends_in_a_model_error_within_the_budget(tmp_path, serving_model_dir):
    # botocore's timeouts bound each socket operation; the fetch as a whole must still end in
    # time for the JSON 503, inside Lambda's 10 s init and timeout.
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"download from S3 took over 0\.3 s"):
        fetch_model_within(0.3, "s3://bucket/models", tmp_path, client=StalledClient(3))
    assert time.monotonic() - started < 1.5
    # A fetch that fails in time fails with its own error, from the caller's thread.
    flaky = FlakyClient(OSError(28, "No space left on device"))
    with pytest.raises(ModelError, match=r"cannot download manifest\.json from S3"):
        fetch_model_within(5, "s3://bucket/models", tmp_path, client=flaky)


def test_access_denied_says_the_object_may_be_missing(tmp_path):
    # Without s3:ListBucket, which the template does not grant, S3 answers a missing key with
    # 403 AccessDenied; the operator must not be sent hunting for an IAM fault alone.
    from botocore.exceptions import ClientError

    class DeniedClient:
        def get_object(self, Bucket: str, Key: str) -> dict:  # boto3's argument names
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(ModelError) as raised:
        fetch_model("s3://bucket/typo-prefix", tmp_path, client=DeniedClient())
    assert str(raised.value) == (
        "cannot download manifest.json from S3 (AccessDenied): it may be missing, or the "
        "function's role may not read it (s3:GetObject, and kms:Decrypt for an SSE-KMS "
        "bucket); check ModelS3Uri's prefix"
    )
