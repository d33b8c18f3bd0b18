import base64
import hashlib
import json
import socket

import pandas as pd
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError
from moto.server import ThreadedMotoServer

from loopwright import artifacts, storage
from loopwright.jobs.profiler.__main__ import main as profiler
from loopwright.jobs.trainer.__main__ import main as trainer


@pytest.fixture(scope="module")
def s3_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, request):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    name = f"b-{request.node.name.replace('_', '-')[:50].lower()}"
    storage.client().create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://b/a/b.csv", "b", "a/b.csv"),
        ("s3://b/prefix/", "b", "prefix/"),
        ("s3://b", "b", ""),
        ("/tmp/x.csv", None, "/tmp/x.csv"),
        ("file:///tmp/a%20b", None, "/tmp/a b"),
        ("rel/path", None, "rel/path"),
    ],
)
def test_parse_uri(uri, bucket, key):
    loc = storage.parse_uri(uri)
    assert (loc.bucket, loc.key) == (bucket, key)


@pytest.mark.parametrize("uri", ["s3:///key", "http://host/x", "gs://b/k"])
def test_parse_uri_rejects(uri):
    with pytest.raises(ValueError, match="s3"):
        storage.parse_uri(uri)


def test_join_uri():
    assert storage.join_uri("s3://b/p/", "m.skops") == "s3://b/p/m.skops"
    assert storage.join_uri("/tmp/out", "m.skops") == "/tmp/out/m.skops"


def test_s3_round_trip_with_checksum(bucket):
    uri = f"s3://{bucket}/runs/r1/model.bin"
    digest = storage.put_bytes(uri, b"hello")
    assert digest == hashlib.sha256(b"hello").hexdigest()
    assert storage.get_bytes(uri, sha256=digest) == b"hello"
    meta = storage.client().head_object(Bucket=bucket, Key="runs/r1/model.bin", ChecksumMode="ENABLED")
    assert meta["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    info = storage.head(uri)
    assert info.size == 5
    assert info.etag


def test_s3_get_refuses_wrong_sha(bucket):
    uri = f"s3://{bucket}/x"
    storage.put_bytes(uri, b"abc", checksum=False)
    with pytest.raises(storage.IntegrityError, match="expected"):
        storage.get_bytes(uri, sha256="0" * 64)


def test_s3_missing_object(bucket):
    with pytest.raises(storage.ObjectNotFoundError):
        storage.get_bytes(f"s3://{bucket}/nope")
    with pytest.raises(storage.ObjectNotFoundError):
        storage.head(f"s3://{bucket}/nope")
    with pytest.raises(storage.ObjectNotFoundError):
        storage.fingerprint(f"s3://{bucket}/nope/")


def test_s3_listing_is_in_key_order_and_folder_scoped(bucket):
    for key in ["data/b.csv", "data/a.csv", "data/sub/c.csv", "data2.csv", "data/"]:
        storage.put_bytes(f"s3://{bucket}/{key}", key.encode())
    listed = [o.uri for o in storage.list_objects(f"s3://{bucket}/data")]
    assert listed == [f"s3://{bucket}/data/{k}" for k in ["a.csv", "b.csv", "sub/c.csv"]]
    assert [o.uri for o in storage.resolve(f"s3://{bucket}/data2.csv")] == [f"s3://{bucket}/data2.csv"]


def test_s3_fingerprint_changes_with_content_only(bucket):
    prefix = f"s3://{bucket}/ds/"
    storage.put_bytes(prefix + "part-0.csv", b"a\n1\n")
    first = storage.fingerprint(prefix)
    assert storage.fingerprint(prefix) == first
    storage.put_bytes(prefix + "part-1.csv", b"a\n2\n")
    second = storage.fingerprint(prefix)
    assert second != first
    storage.put_bytes(prefix + "part-1.csv", b"a\n3\n")
    assert storage.fingerprint(prefix) != second
    assert storage.fingerprint(prefix + "part-0.csv") != storage.fingerprint(prefix + "part-1.csv")


def _signing_keys(s3_client):
    """The access key ids the client signs its requests with (seen through botocore's event hooks)."""
    seen = []
    s3_client.meta.events.register(
        "before-send.s3.*",
        lambda request, **_: seen.append(request.headers["Authorization"].decode().split("Credential=")[1]
                                         .split("/")[0]))
    return seen


def test_explicit_credentials_sign_the_fingerprint_check(bucket):
    storage.put_bytes(f"s3://{bucket}/ds/part-0.csv", b"a\n1\n")
    granted = storage.Credentials(access_key_id="OWNERKEY", secret_access_key="owner-secret")
    seen = _signing_keys(storage.client(credentials=granted))
    own = _signing_keys(storage.client())
    # moto accepts any key: the point is which key signed, and that the listing is the same.
    assert storage.fingerprint(f"s3://{bucket}/ds/", credentials=granted) == storage.fingerprint(f"s3://{bucket}/ds/")
    assert set(seen) == {"OWNERKEY"}
    assert set(own) == {"test"}
    # One client per key pair: reused while the Secret is unchanged, a new one once it rotates.
    assert storage.client(credentials=granted) is storage.client(
        credentials=storage.Credentials(access_key_id="OWNERKEY", secret_access_key="owner-secret"))
    rotated = storage.Credentials(access_key_id="OWNERKEY", secret_access_key="rotated")
    assert storage.client(credentials=rotated) is not storage.client(credentials=granted)
    assert "owner-secret" not in repr(granted)


class _Refusing:
    def __init__(self, error):
        self.error = error

    def head_object(self, **_):
        raise self.error

    get_object = put_object = head_object


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject"),
         storage.AccessDeniedError, ["access denied (403: Forbidden)"]),
        (ClientError({"Error": {"Code": "SignatureDoesNotMatch", "Message": "check your key"}}, "HeadObject"),
         storage.AccessDeniedError, ["SignatureDoesNotMatch", "check your key"]),
        (ClientError({"Error": {"Code": "InvalidAccessKeyId"}}, "HeadObject"),
         storage.AccessDeniedError, ["InvalidAccessKeyId"]),
        (ClientError({"Error": {"Code": "SlowDown"}}, "HeadObject"), storage.StorageError, ["SlowDown"]),
        (NoCredentialsError(), storage.StorageError, ["Unable to locate credentials"]),
        (EndpointConnectionError(endpoint_url="http://s3.invalid"), storage.EndpointUnreachableError,
         ["S3 unreachable", "s3.invalid"]),
        (ReadTimeoutError(endpoint_url="http://s3:9000"), storage.EndpointUnreachableError, ["s3:9000"]),
    ],
)
@pytest.mark.parametrize("operation", [storage.head, storage.get_bytes,
                                       lambda uri: storage.put_bytes(uri, b"a\n1\n")])
def test_refusals_and_transport_failures_are_storage_errors(monkeypatch, error, kind, words, operation):
    monkeypatch.setattr(storage, "client", lambda **_: _Refusing(error))
    with pytest.raises(storage.StorageError) as caught:
        operation("s3://bkt/d.csv")
    assert type(caught.value) is kind
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_local_round_trip(tmp_path):
    uri = str(tmp_path / "deep" / "dir" / "f.bin")
    digest = storage.put_bytes(uri, b"xyz")
    assert storage.get_bytes(uri, sha256=digest.upper()) == b"xyz"
    assert storage.get_bytes("file://" + uri) == b"xyz"
    with pytest.raises(storage.IntegrityError):
        storage.get_bytes(uri, sha256=hashlib.sha256(b"other").hexdigest())
    assert not [p for p in (tmp_path / "deep" / "dir").iterdir() if p.name.startswith(".")]


def test_local_put_file_and_listing(tmp_path):
    src = tmp_path / "src.txt"
    src.write_bytes(b"payload")
    out = tmp_path / "out"
    assert storage.put_file(str(out / "b.txt"), src) == hashlib.sha256(b"payload").hexdigest()
    storage.put_bytes(str(out / "a.txt"), b"1")
    assert [o.uri for o in storage.list_objects(str(out))] == [str(out / "a.txt"), str(out / "b.txt")]
    fp = storage.fingerprint(str(out))
    storage.put_bytes(str(out / "a.txt"), b"22")
    assert storage.fingerprint(str(out)) != fp


def test_local_missing(tmp_path):
    with pytest.raises(storage.ObjectNotFoundError):
        storage.get_bytes(str(tmp_path / "nope"))
    with pytest.raises(storage.ObjectNotFoundError):
        storage.resolve(str(tmp_path / "nope"))


def test_profiler_and_trainer_run_against_s3(bucket, tmp_path, monkeypatch):
    """Both Jobs read the dataset and write every output through S3 with verified sha256."""
    monkeypatch.setenv("LOOPWRIGHT_TERMINATION_LOG", str(tmp_path / "termination-log"))
    rows = "".join(f"{i % 7},{'abc'[i % 3]},{int(i % 7 > 3)}\n" for i in range(120))
    storage.put_bytes(f"s3://{bucket}/data/part-0.csv", ("a,c,y\n" + rows[: len(rows) // 2]).encode())
    storage.put_bytes(f"s3://{bucket}/data/part-1.csv", ("a,c,y\n" + rows[len(rows) // 2 :]).encode())
    schema = json.dumps({
        "label": {"name": "y", "task": "classification"},
        "columns": [{"name": "a", "type": "numeric"}, {"name": "c", "type": "categorical"}],
    })
    assert profiler([
        "--source-uri", f"s3://{bucket}/data/", "--schema-json", schema,
        "--output-prefix", f"s3://{bucket}/datasets/ns/d/fp/",
    ]) == 0
    result = json.loads(storage.get_bytes(f"s3://{bucket}/datasets/ns/d/fp/result.json"))
    assert result["valid"] is True
    assert result["rows"] == 120
    storage.get_bytes(result["profileUri"], sha256=result["profileSha256"])

    assert trainer([
        "--dataset-uri", f"s3://{bucket}/data/", "--dataset-digest", result["digest"],
        "--schema-json", schema,
        "--estimator", "RandomForestClassifier", "--params-json", '{"n_estimators": 5}',
        "--output-prefix", f"s3://{bucket}/models/ns/m/runs/r1/",
    ]) == 0
    run = json.loads(storage.get_bytes(f"s3://{bucket}/models/ns/m/runs/r1/result.json"))
    model = run["artifacts"]["model"]
    assert model["uri"] == f"s3://{bucket}/models/ns/m/runs/r1/model.skops"
    loaded = artifacts.load(model["uri"], sha256=model["sha256"])
    assert loaded.predict(pd.DataFrame({"a": [6.0], "c": ["a"]}))[0] == "1"


def test_the_environments_keys_sign_even_after_boto3_resolved_others(bucket, monkeypatch):
    """boto3's default session caches the first keys it finds (here an earlier test's cluster keys)."""
    import boto3  # noqa: PLC0415 - the storage module imports it lazily too

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "EARLIERKEY")
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == "EARLIERKEY"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "LATERKEY")
    storage.put_bytes(f"s3://{bucket}/ds/part-0.csv", b"a\n1\n")
    own = _signing_keys(storage.client())
    storage.fingerprint(f"s3://{bucket}/ds/")
    assert set(own) == {"LATERKEY"}
