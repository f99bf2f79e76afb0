"""Fetch a model directory from S3 (`MODEL_S3_URI`) into a local cache, verifying every file.

manifest.json is read first; each file it lists is streamed to a temporary name, checked
against its size and sha256, then renamed into place, so the cache never holds a partial or
corrupt file. The manifest is written last and marks a complete copy, which later cold starts
(or re-imports) in the same container reuse. boto3 is imported only here, only when used.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

from lambda_handler.files import sha256_file, write_bytes_atomic
from lambda_handler.manifest import MANIFEST_NAME, FileEntry, Manifest, ModelError

CHUNK_BYTES = 1 << 20
# How long a load may wait for S3, in all: Lambda's init phase and the function's timeout are
# both 10 s, and a failed load is retried on a request, so a stalled or trickling S3 must end in
# the JSON 503 (and a retry later), never in a Lambda timeout.
FETCH_SECONDS = 6.0
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Bucket and key prefix (no trailing slash) of `s3://bucket/prefix`."""
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri.strip())
    if not match:
        raise ModelError("MODEL_S3_URI must look like s3://bucket/prefix")
    return match.group(1), match.group(2).strip("/")


def fetch_model(
    uri: str, cache_root: str | Path, client: Any = None, trust_marker: bool = True
) -> Path:
    """Local directory holding a verified copy of the model at `uri`; downloads what is missing.

    A copy marked complete is reused when its files are all there at their sizes (the loader
    then checks their sha256); `trust_marker=False` checks every file's sha256 here instead
    and downloads again whatever differs, which repairs a copy changed after it was marked.
    """
    bucket, prefix = parse_s3_uri(uri)
    if client is None:
        client = default_client()
    raw_manifest = _get_bytes(client, bucket, _key(prefix, MANIFEST_NAME))
    manifest = Manifest.parse(raw_manifest)
    target = Path(cache_root) / _cache_name(manifest, raw_manifest)
    marker = target / MANIFEST_NAME
    if trust_marker and _is_marked(marker, raw_manifest, manifest):
        return target
    target.mkdir(parents=True, exist_ok=True)
    for entry in manifest.files.values():
        path = target / entry.name
        if not _is_verified(path, entry):
            _download(client, bucket, _key(prefix, entry.name), entry, path)
    try:  # the loader reads the manifest from the directory too
        write_bytes_atomic(marker, raw_manifest)
    except OSError as error:
        message = f"cannot write {MANIFEST_NAME} to the model cache ({_failure(error)})"
        raise ModelError(message) from None
    return target


def fetch_model_within(seconds: float, uri: str, cache_root: str | Path, **options: Any) -> Path:
    """`fetch_model`, or a ModelError once `seconds` have passed. botocore's timeouts bound
    each socket operation, not a download, so the fetch runs in a thread that is waited for;
    one that overruns carries on in the background into the cache, whose files are written
    whole, and a later try may find its work done."""
    outcome: dict[str, Any] = {}

    def fetch() -> None:
        try:
            outcome["directory"] = fetch_model(uri, cache_root, **options)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=fetch, name="model-fetch", daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    if worker.is_alive():
        raise ModelError(f"the model's download from S3 took over {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["directory"]


def _is_marked(marker: Path, raw_manifest: bytes, manifest: Manifest) -> bool:
    """Whether the copy is marked complete and every file is still there at its size."""
    try:
        if marker.read_bytes() != raw_manifest:
            return False
        return all(
            (marker.parent / entry.name).stat().st_size == entry.size
            for entry in manifest.files.values()
        )
    except OSError:
        return False


def default_client() -> Any:
    """An S3 client; boto3 reads credentials, region and AWS_ENDPOINT_URL(_S3) itself."""
    import boto3
    from botocore.config import Config

    # Short, so that a stalled connection is retried (or given up) well within FETCH_SECONDS:
    # two attempts of at most 2 s to connect and 3 s per read. A healthy in-region download
    # of the model takes about a second.
    config = Config(
        connect_timeout=2, read_timeout=3, retries={"mode": "standard", "max_attempts": 2}
    )
    return boto3.client("s3", config=config)


def _key(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _cache_name(manifest: Manifest, raw_manifest: bytes) -> str:
    """`model-<version>-<manifest hash>`: a new upload never reuses an older copy."""
    version = re.sub(r"[^A-Za-z0-9._-]", "_", manifest.version)[:64]
    return f"model-{version}-{hashlib.sha256(raw_manifest).hexdigest()[:16]}"


def _is_verified(path: Path, entry: FileEntry) -> bool:
    """True when `path` already holds the manifest's bytes (an earlier, interrupted fetch)."""
    try:
        return path.stat().st_size == entry.size and sha256_file(path) == entry.sha256
    except OSError:
        return False


def _get_object(client: Any, bucket: str, key: str) -> Any:
    """The GetObject response, with S3/network failures turned into a ModelError."""
    from botocore.exceptions import BotoCoreError, ClientError

    name = key.rsplit("/", 1)[-1]
    try:
        return client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise ModelError(f"no model: {name} is missing from the model's S3 location") from None
        if code == "AccessDenied":  # also S3's answer to a missing key without s3:ListBucket
            raise ModelError(
                f"cannot download {name} from S3 (AccessDenied): it may be missing, or the "
                "function's role may not read it (s3:GetObject, and kms:Decrypt for an SSE-KMS "
                "bucket); check ModelS3Uri's prefix"
            ) from None
        raise ModelError(f"cannot download {name} from S3 ({code or 'client error'})") from None
    except BotoCoreError as error:
        raise ModelError(f"cannot download {name} from S3 ({_failure(error)})") from None


def _failure(error: BaseException) -> str:
    """What went wrong, without the endpoint URL, bucket or local path that the error's own
    text may hold: this line also reaches callers in the 503 body."""
    reason = getattr(error, "strerror", None) if isinstance(error, OSError) else None
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__


def _get_bytes(client: Any, bucket: str, key: str) -> bytes:
    """A small object's bytes (manifest.json)."""
    from botocore.exceptions import BotoCoreError

    with closing(_get_object(client, bucket, key)["Body"]) as body:
        try:
            return body.read()
        except (BotoCoreError, OSError) as error:
            name = key.rsplit("/", 1)[-1]
            raise ModelError(f"cannot download {name} from S3 ({_failure(error)})") from None


def _download(client: Any, bucket: str, key: str, entry: FileEntry, path: Path) -> None:
    """Stream one object to a temporary file, verify size and sha256, then rename into place."""
    from botocore.exceptions import BotoCoreError

    # Closed however it ends, so that a failed or refused download returns its connection.
    with closing(_get_object(client, bucket, key)["Body"]) as body:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".part"
        )
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(handle, "wb") as out:
                for chunk in body.iter_chunks(CHUNK_BYTES):
                    size += len(chunk)
                    if size > entry.size:
                        break
                    digest.update(chunk)
                    out.write(chunk)
            if size != entry.size:
                raise ModelError(
                    f"{entry.name} in S3 has a different size than manifest.json says "
                    f"({entry.size})"
                )
            if digest.hexdigest() != entry.sha256:
                raise ModelError(
                    f"{entry.name} downloaded from S3 does not match its sha256 in manifest.json"
                )
            os.replace(temporary, path)
        except (BotoCoreError, OSError) as error:
            # Only this download's own temporary file goes: `path` may be another cold start's
            # verified copy, sharing the cache.
            Path(temporary).unlink(missing_ok=True)
            raise ModelError(f"cannot download {entry.name} from S3 ({_failure(error)})") from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
