"""Upload tests against a real S3 API: moto's server on a free loopback port, reached over HTTP
by an ordinary boto3 client (nothing in boto3 is patched)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from boto3.exceptions import S3UploadFailedError

from export import ExportError
from export.manifest import build_manifest
from export.run import main
from export.upload import S3Location, parse_s3_uri, upload_model_dir
from lambda_handler.files import write_json_atomic
from lambda_handler.manifest import REQUIRED_FILES

MODEL_FILES = {
    name: b"\x08\x09onnx-bytes" if name == "model.onnx" else b"{}" for name in REQUIRED_FILES
}


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small but valid model directory (content is opaque to the upload)."""
    directory = tmp_path / "model"
    directory.mkdir()
    for name, data in MODEL_FILES.items():
        (directory / name).write_bytes(data)
    manifest = build_manifest(
        directory,
        created=datetime(2026, 11, 25, tzinfo=UTC),
        opset=17,
        training_data={},
        metrics={},
        served={},
        gates={},
        versions={},
    )
    write_json_atomic(directory / "manifest.json", manifest)
    return directory


def objects(s3, bucket: str) -> dict[str, bytes]:
    """Every object in `bucket` with its content."""
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing
    }


def expected_objects(model_dir: Path, prefix: str) -> dict[str, bytes]:
    """What an upload of `model_dir` under `prefix` must leave in the bucket."""
    names = [*MODEL_FILES, "manifest.json"]
    return {f"{prefix}/{name}": (model_dir / name).read_bytes() for name in names}


def test_upload_puts_every_file_then_the_manifest(s3, bucket: str, model_dir: Path) -> None:
    puts = []
    s3.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )
    keys = upload_model_dir(model_dir, S3Location(bucket, "models/v1"), client=s3)
    assert puts == keys
    assert puts[-1] == "models/v1/manifest.json"
    assert sorted(puts) == sorted(expected_objects(model_dir, "models/v1"))
    assert objects(s3, bucket) == expected_objects(model_dir, "models/v1")
    head = s3.head_object(Bucket=bucket, Key="models/v1/manifest.json")
    assert head["ContentType"] == "application/json"


def test_cli_uploads_an_existing_directory(
    s3, bucket: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--skip-export", "--upload", f"s3://{bucket}/arxiv/lstm/", "--out", str(model_dir)]
    assert main(args) == 0
    assert objects(s3, bucket) == expected_objects(model_dir, "arxiv/lstm")
    assert capsys.readouterr().err == ""


def test_cli_refuses_to_upload_a_damaged_directory(
    s3, bucket: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (model_dir / "labels.json").write_bytes(b"[]")  # same size, other bytes
    assert main(["--skip-export", "--upload", f"s3://{bucket}/m", "--out", str(model_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"export: error: {model_dir}: labels.json ")
    assert err.endswith("the file is corrupt or was changed\n")
    assert objects(s3, bucket) == {}
    assert objects(s3, bucket) == {}


def test_failed_upload_is_one_line_and_sends_no_manifest(s3, model_dir: Path) -> None:
    with pytest.raises(ExportError) as raised:
        upload_model_dir(model_dir, S3Location("no-such-bucket", "m"), client=s3)
    message = str(raised.value)
    assert message.startswith("cannot look for a model at s3://no-such-bucket/m: ")
    assert "NoSuchBucket" in message
    assert "\n" not in message


def test_skip_export_needs_upload(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--skip-export"])
    assert raised.value.code == 2
    assert "--skip-export needs --upload" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("uri", "manifest_key"),
    [
        ("s3://bucket/a/b", "a/b/manifest.json"),
        ("s3://bucket/a/b/", "a/b/manifest.json"),
        ("s3://bucket", "manifest.json"),
    ],
)
def test_parse_s3_uri(uri: str, manifest_key: str) -> None:
    location = parse_s3_uri(uri)
    assert location.bucket == "bucket"
    assert location.key("manifest.json") == manifest_key


@pytest.mark.parametrize("uri", ["bucket/prefix", "s3:///prefix", "https://bucket/prefix"])
def test_parse_s3_uri_refuses_other_uris(uri: str) -> None:
    with pytest.raises(ExportError, match="not an S3 URI"):
        parse_s3_uri(uri)


@pytest.mark.parametrize("uri", ["s3://bucket/a//b", "s3://bucket/models/*", "s3://bucket/v?"])
def test_parse_s3_uri_refuses_prefixes_the_template_would_refuse(uri: str) -> None:
    with pytest.raises(ExportError, match=r"a prefix may hold no empty part \(//\), \* or \?"):
        parse_s3_uri(uri)


def other_model(model_dir: Path, tmp_path: Path) -> Path:
    """A copy of `model_dir` with other labels and its own manifest: another model."""
    other = tmp_path / "other"
    other.mkdir()
    for name in MODEL_FILES:
        (other / name).write_bytes((model_dir / name).read_bytes())
    (other / "labels.json").write_bytes(b'{"other": true}')
    manifest = build_manifest(
        other, created=datetime(2026, 12, 6, tzinfo=UTC), opset=17, training_data={},
        metrics={}, served={}, gates={}, versions={},
    )  # fmt: skip
    write_json_atomic(other / "manifest.json", manifest)
    return other


class FailsOnFourthFile:
    """An S3 client whose fourth upload_file fails, as a network would."""

    def __init__(self, client) -> None:
        self.client, self.uploads = client, 0

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def upload_file(self, *args, **kwargs) -> None:
        self.uploads += 1
        if self.uploads == 4:
            raise S3UploadFailedError("connection reset")
        self.client.upload_file(*args, **kwargs)


def test_a_prefix_holding_another_model_is_refused_unless_replaced(
    s3, bucket: str, model_dir: Path, tmp_path: Path
) -> None:
    location = S3Location(bucket, "models/v1")
    upload_model_dir(model_dir, location, client=s3)
    upload_model_dir(model_dir, location, client=s3)  # the same model again: a retry is fine
    before = objects(s3, bucket)
    other = other_model(model_dir, tmp_path)
    with pytest.raises(ExportError, match="already holds another model; upload to a new prefix"):
        upload_model_dir(other, location, client=s3)
    assert objects(s3, bucket) == before  # nothing sent
    with pytest.raises(ExportError, match="connection reset"):
        upload_model_dir(other, location, client=FailsOnFourthFile(s3), replace=True)
    left = objects(s3, bucket)
    assert "models/v1/manifest.json" not in left  # no model, rather than a mix of two
    upload_model_dir(other, location, client=s3, replace=True)
    assert objects(s3, bucket) == expected_objects(other, "models/v1")


def test_an_export_that_ends_in_an_upload_checks_the_destination_first(
    s3, bucket: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import export.run

    exported = []
    monkeypatch.setattr(export.run, "run_export", lambda args: exported.append(args))
    upload_model_dir(model_dir, S3Location(bucket, "models/v1"), client=s3)
    assert main(["--upload", f"s3://{bucket}/models/v1", "--out", str(model_dir)]) == 1
    assert exported == []  # refused before minutes of export and a replaced model directory
    assert "already holds another model" in capsys.readouterr().err
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it keeps the credentials it found
    assert main(["--upload", f"s3://{bucket}/models/v2", "--out", str(model_dir)]) == 1
    assert exported == [] and "credentials" in capsys.readouterr().err.lower()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "not a url")
    assert main(["--upload", f"s3://{bucket}/models/v2", "--out", str(model_dir)]) == 1
    assert capsys.readouterr().err.startswith("export: error: cannot set up an S3 client")


def test_replace_needs_upload(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--replace"])
    assert raised.value.code == 2 and "--replace needs --upload" in capsys.readouterr().err


def test_an_access_denied_probe_says_which_permissions_the_upload_needs(model_dir: Path) -> None:
    from botocore.exceptions import ClientError

    class Denied:
        def get_object(self, **_: object) -> dict:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    with pytest.raises(ExportError, match="needs s3:GetObject and s3:ListBucket"):
        upload_model_dir(model_dir, S3Location("bucket", "m"), client=Denied())


def test_an_interrupted_export_exits_130_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    import export.run

    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(export.run, "run_export", interrupted)
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert main([]) == 130
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # kill ends it cleanly too
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    assert capsys.readouterr().err.startswith("export: interrupted: nothing is half-written")
