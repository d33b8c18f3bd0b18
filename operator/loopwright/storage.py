"""Object access for datasets and artifacts: S3 (``s3://bucket/key``) or a local path.

Everything Loopwright stores is addressed by URI and carries a sha256, so a
reader can prove it got exactly the bytes a writer produced. Local paths (plain
or ``file://``) behave like a tiny S3 so the jobs, the tests and the benchmarks
run without a server.

The S3 client is configured from boto3's standard environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), with
``LOOPWRIGHT_S3_ENDPOINT`` as a fallback endpoint, ``us-east-1`` as the default
region and path-style addressing, which S3-compatible servers need. The read
functions also take explicit :class:`Credentials`: the operator checks a
Dataset's source with the credentials its owner granted, not its own.

boto3 is imported on the first S3 access: a Job that reads and writes local
paths (tests, benchmarks) never loads the AWS SDK's 350 modules (~0.1 s of CPU).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


class StorageError(Exception):
    """An object could not be read or written."""


class ObjectNotFoundError(StorageError):
    """No object (and no object under the prefix) exists at the URI."""


class AccessDeniedError(StorageError):
    """S3 refused the credentials (unknown key, wrong secret, or no permission for this object)."""


class CredentialsError(Exception):
    """Credentials named by a resource (a Secret) cannot be used; ``reason`` is the condition reason to
    publish (see :mod:`loopwright.operator.credentials`)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class EndpointUnreachableError(StorageError):
    """The S3 endpoint did not answer (refused, unresolvable, timed out): an outage to wait out,
    not a verdict on the object."""


class IntegrityError(StorageError):
    """The bytes read do not have the sha256 the caller was promised."""


@dataclass(frozen=True)
class Location:
    """A parsed URI: an S3 bucket and key, or a local path (``bucket`` is None)."""

    bucket: str | None
    key: str

    @property
    def is_s3(self) -> bool:
        return self.bucket is not None

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.bucket is not None else self.key


@dataclass(frozen=True)
class Credentials:
    """An S3 access key pair given explicitly rather than through the environment.

    The secret is left out of ``repr``, so a log line or a traceback that shows a
    ``Credentials`` never shows the secret.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a HEAD tells about one object, enough to detect a change."""

    uri: str
    size: int
    etag: str
    version_id: str | None = None


def parse_uri(uri: str) -> Location:
    """Split ``s3://bucket/key`` into bucket and key; anything else is a local path."""
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise ValueError(f"{uri!r}: an s3 URI needs a bucket")
        return Location(bucket=parsed.netloc, key=parsed.path.lstrip("/"))
    if uri.startswith("file://"):
        return Location(bucket=None, key=unquote(urlparse(uri).path))
    if "://" in uri:
        raise ValueError(f"{uri!r}: only s3:// URIs and local paths are supported")
    return Location(bucket=None, key=uri)


def join_uri(prefix: str, name: str) -> str:
    """``prefix`` (an S3 prefix or a directory) with ``name`` appended after one slash."""
    return f"{prefix.rstrip('/')}/{name}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client(*, credentials: Credentials | None = None) -> Any:
    """The S3 client for the current environment's endpoint, with ``credentials`` or the environment's.

    Clients are cached per endpoint and credentials: building one costs tens of milliseconds,
    and a rotated key pair is a new cache entry, so it takes effect at the next call.
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("LOOPWRIGHT_S3_ENDPOINT") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _client(endpoint, region, os.environ.get("AWS_ACCESS_KEY_ID"), credentials)


@functools.lru_cache(maxsize=32)
def _client(
    endpoint: str | None, region: str, _env_access_key: str | None, credentials: Credentials | None,
) -> Any:
    import boto3  # noqa: PLC0415 - see the module docstring
    from botocore.config import Config  # noqa: PLC0415

    # Checksums only when we ask for them: S3-compatible servers differ in their
    # support for the automatic CRC trailers newer botocore sends by default.
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 5, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    keys = {} if credentials is None else {"aws_access_key_id": credentials.access_key_id,
                                           "aws_secret_access_key": credentials.secret_access_key}
    # A session of its own: boto3's default session keeps the credentials it resolved first,
    # so a client for a changed environment would still sign with the old keys.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=endpoint, region_name=region, config=config, **keys)


def put_bytes(uri: str, data: bytes, *, checksum: bool = True) -> str:
    """Write ``data`` and return its sha256 (hex).

    With ``checksum``, S3 is given the SHA256 too and rejects the upload if the
    bytes it received differ, so a corrupted transfer never lands.
    """
    digest = hashlib.sha256(data)
    loc = parse_uri(uri)
    if loc.is_s3:
        extra: dict[str, str] = {}
        if checksum:
            extra["ChecksumAlgorithm"] = "SHA256"
            extra["ChecksumSHA256"] = base64.b64encode(digest.digest()).decode("ascii")
        try:
            client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **extra)
        except _s3_errors() as exc:
            raise _translate(exc, f"cannot write {uri}") from exc
    else:
        try:
            _write_local(Path(loc.key), data)
        except OSError as exc:
            raise StorageError(f"cannot write {uri}: {exc}") from exc
    return digest.hexdigest()


def put_file(uri: str, path: str | os.PathLike[str], *, checksum: bool = True) -> str:
    """Upload a local file; returns its sha256 (hex)."""
    return put_bytes(uri, Path(path).read_bytes(), checksum=checksum)


def get_bytes(uri: str, *, sha256: str | None = None) -> bytes:
    """Read an object; with ``sha256``, refuse bytes that do not match it."""
    loc = parse_uri(uri)
    if loc.is_s3:
        try:
            body = client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
            data: bytes = body.read()
        except _s3_errors() as exc:
            raise _translate(exc, uri) from exc
    else:
        try:
            data = Path(loc.key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(f"{uri}: no such file") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc}") from exc
    if sha256 is not None:
        actual = sha256_hex(data)
        if actual != sha256.lower():
            raise IntegrityError(f"{uri}: sha256 is {actual}, expected {sha256}")
    return data


def head(uri: str, *, credentials: Credentials | None = None) -> ObjectInfo:
    """Size, ETag and version id of one object (for a local file: size and mtime)."""
    loc = parse_uri(uri)
    if loc.is_s3:
        try:
            meta = client(credentials=credentials).head_object(Bucket=loc.bucket, Key=loc.key)
        except _s3_errors() as exc:
            raise _translate(exc, uri) from exc
        return ObjectInfo(
            uri=uri,
            size=int(meta["ContentLength"]),
            etag=str(meta.get("ETag", "")).strip('"'),
            version_id=meta.get("VersionId"),
        )
    path = Path(loc.key)
    if not path.is_file():
        raise ObjectNotFoundError(f"{uri}: no such file")
    return _local_info(path)


def list_objects(uri: str, *, credentials: Credentials | None = None) -> list[ObjectInfo]:
    """Every object under a prefix (or directory), in key order.

    A prefix without a trailing slash is read as a folder (``data`` lists
    ``data/...``, not ``data2.csv``). Zero-byte "folder marker" keys are skipped.
    """
    loc = parse_uri(uri)
    if loc.is_s3:
        prefix = loc.key if not loc.key or loc.key.endswith("/") else f"{loc.key}/"
        out: list[ObjectInfo] = []
        try:
            paginator = client(credentials=credentials).get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=loc.bucket, Prefix=prefix)
            for page in pages:
                out.extend(
                    ObjectInfo(
                        uri=f"s3://{loc.bucket}/{item['Key']}",
                        size=int(item["Size"]),
                        etag=str(item.get("ETag", "")).strip('"'),
                    )
                    for item in page.get("Contents", [])
                    if not item["Key"].endswith("/")
                )
        except _s3_errors() as exc:
            raise _translate(exc, uri) from exc
        return sorted(out, key=lambda o: o.uri)
    root = Path(loc.key)
    if not root.is_dir():
        return []
    return [_local_info(p) for p in sorted(root.rglob("*")) if p.is_file()]


def resolve(uri: str, *, credentials: Credentials | None = None) -> list[ObjectInfo]:
    """The objects a dataset URI denotes: the object itself, else everything under the prefix."""
    if not uri.endswith("/") and parse_uri(uri).key:
        try:
            return [head(uri, credentials=credentials)]
        except ObjectNotFoundError:
            pass
    objects = list_objects(uri, credentials=credentials)
    if not objects:
        raise ObjectNotFoundError(f"{uri}: no object and nothing under this prefix")
    return objects


def fingerprint(uri: str, *, credentials: Credentials | None = None) -> str:
    """A cheap change detector: sha256 over (key, etag, size, version id) of the object or listing.

    It reads no content, so the operator can poll it every refresh interval;
    the profiling job then computes the real content digest.
    """
    h = hashlib.sha256()
    for obj in resolve(uri, credentials=credentials):
        h.update(f"{obj.uri}\0{obj.etag}\0{obj.size}\0{obj.version_id or ''}\n".encode())
    return h.hexdigest()


def _s3_errors() -> tuple[type[Exception], type[Exception]]:
    """botocore's ClientError and BotoCoreError, imported only once S3 is in use (module docstring)."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    return ClientError, BotoCoreError


def _translate(exc: Exception, uri: str) -> StorageError:
    """The storage error a caller can act on, for reads and writes alike (an unreachable endpoint is
    retried sooner than other failures); BotoCoreError (no endpoint, no credentials) is one too."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError  # noqa: PLC0415

    if isinstance(exc, ConnectionError | HTTPClientError):
        return EndpointUnreachableError(f"{uri}: S3 unreachable: {exc}")
    if not isinstance(exc, ClientError):
        return StorageError(f"{uri}: {exc}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code in _NOT_FOUND_CODES:
        return ObjectNotFoundError(f"{uri}: not found ({code})")
    if code in _DENIED_CODES:
        detail = f": {error['Message']}" if error.get("Message") else ""
        return AccessDeniedError(f"{uri}: access denied ({code}{detail})")
    return StorageError(f"{uri}: {exc}")


def _local_info(path: Path) -> ObjectInfo:
    st = path.stat()
    return ObjectInfo(uri=str(path), size=st.st_size, etag=f"{st.st_mtime_ns:x}-{st.st_size:x}")


def _write_local(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
