"""Upload a model directory to S3, manifest last.

Readers accept a prefix only when its manifest matches every file, and the manifest goes up
after all files, so a reader never accepts a half-uploaded model. The directory is verified
against its manifest before anything is sent. A prefix holds one model: one that already holds
another is refused, since files overwritten under its manifest would make it unreadable, unless
`replace` is given; then its manifest goes first, so that until the new one is up a reader
finds no model rather than a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from export import ExportError
from export.manifest import verify_model_dir
from lambda_handler.manifest import MANIFEST_NAME, ModelError
from lambda_handler.s3_model import parse_s3_uri as split_s3_uri

CONTENT_TYPES = {".json": "application/json", ".onnx": "application/octet-stream"}


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str

    def key(self, name: str) -> str:
        """Object key of file `name` under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_uri(uri: str) -> S3Location:
    """`s3://bucket/some/prefix` -> S3Location("bucket", "some/prefix"), split as the function
    splits MODEL_S3_URI, and refused where the template's ModelS3Uri would refuse it."""
    try:
        bucket, prefix = split_s3_uri(uri)
    except ModelError:
        raise ExportError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)") from None
    if "//" in prefix or any(char in prefix for char in "*?"):
        # the template's ModelS3Uri refuses these: the function could not be pointed here
        raise ExportError(f"{uri!r}: a prefix may hold no empty part (//), * or ?")
    return S3Location(bucket=bucket, prefix=prefix)


def upload_model_dir(
    directory: Path, location: S3Location, client: BaseClient | None = None, replace: bool = False
) -> list[str]:
    """Upload the files `directory`'s manifest lists, then the manifest; returns the keys."""
    manifest = verify_model_dir(directory)
    client = client or s3_client()
    existing = stored_manifest(client, location)
    if existing is not None and existing != (directory / MANIFEST_NAME).read_bytes():
        if not replace:
            raise ExportError(ANOTHER_MODEL.format(location=location))
        try:
            client.delete_object(Bucket=location.bucket, Key=location.key(MANIFEST_NAME))
        except (BotoCoreError, ClientError) as error:
            raise ExportError(f"cannot remove the manifest at {location}: {error}") from None
    keys = []
    for name in [*manifest.files, MANIFEST_NAME]:
        key = location.key(name)
        content_type = CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
        try:
            client.upload_file(
                str(directory / name), location.bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except (BotoCoreError, ClientError, S3UploadFailedError) as error:
            raise ExportError(f"upload of {name} to {location} failed: {error}") from None
        keys.append(key)
    return keys


ANOTHER_MODEL = (
    "{location} already holds another model; upload to a new prefix (one per model version, "
    "which MODEL_S3_URI then names), or pass --replace"
)


def s3_client() -> BaseClient:
    """boto3's S3 client; ExportError when it cannot be set up."""
    try:
        return boto3.client("s3")
    except (BotoCoreError, ValueError) as error:  # an unknown profile, a malformed endpoint URL
        raise ExportError(f"cannot set up an S3 client: {error}") from None


def check_destination(
    location: S3Location, client: BaseClient | None = None, replace: bool = False
) -> None:
    """Before an export that ends in an upload to `location`: the credentials reach it, and it
    holds no model unless `replace` (the export's model will differ from any there), so that a
    refused upload does not come after minutes of export and a replaced model directory."""
    if stored_manifest(client or s3_client(), location) is not None and not replace:
        raise ExportError(ANOTHER_MODEL.format(location=location))


def stored_manifest(client: BaseClient, location: S3Location) -> bytes | None:
    """The manifest.json bytes already under `location`, or None when there is none."""
    try:
        answer = client.get_object(Bucket=location.bucket, Key=location.key(MANIFEST_NAME))
        return answer["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return None
        hint = (
            " (the upload needs s3:GetObject and s3:ListBucket there, without which S3 answers "
            "a missing key with 403, and s3:PutObject; s3:DeleteObject too with --replace)"
            if code in ("AccessDenied", "403")
            else ""
        )
        raise ExportError(f"cannot look for a model at {location}: {error}{hint}") from None
    except BotoCoreError as error:
        raise ExportError(f"cannot look for a model at {location}: {error}") from None
