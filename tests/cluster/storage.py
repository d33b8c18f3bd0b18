"""S3 for datasets and artifacts: versitygw serving a directory (its posix backend).

A real S3 server (signatures, multipart, ETags, errors) rather than a mock, so the operator's
boto3 code meets the same protocol as on AWS or MinIO. It listens on all addresses of the
host: 127.0.0.1 for host processes and NODE_IP for pods. In the cluster it is the
selector-less Service loopwright-system/s3 with a hand-made EndpointSlice pointing at NODE_IP.
"""
from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from controlplane import NODE_IP
from procs import Proc

PORT = 9000
BUCKET = "loopwright"
REGION = "us-east-1"
NAMESPACE = "loopwright-system"
SECRET = "loopwright-s3"
HOST_ENDPOINT = f"http://127.0.0.1:{PORT}"


def credentials(*, state: Path) -> dict[str, str]:
    """Root credentials, generated once and kept so an exported environment stays valid."""
    path = state / "s3-credentials.json"
    if not path.exists():
        path.write_text(json.dumps({
            "AWS_ACCESS_KEY_ID": "LW" + secrets.token_hex(9).upper(),
            "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        }))
        path.chmod(0o600)
    creds: dict[str, str] = json.loads(path.read_text())
    return creds


def proc(*, bins: Path, state: Path) -> Proc:
    data = state / "s3"
    data.mkdir(parents=True, exist_ok=True)
    creds = credentials(state=state)
    # Credentials go through the environment, not argv, so `ps` does not show the secret.
    return Proc("versitygw", [str(bins / "versitygw"), "--port", f":{PORT}", "posix", str(data)],
                ready=_ready, env={"ROOT_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
                                   "ROOT_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"]})


def _ready() -> bool:
    try:
        urllib.request.urlopen(HOST_ENDPOINT, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # an S3 error document (anonymous request) means it is serving
    except OSError:
        return False
    return True


def create_bucket(*, state: Path) -> None:
    creds = credentials(state=state)
    s3 = boto3.client("s3", endpoint_url=HOST_ENDPOINT, region_name=REGION,
                      aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
    try:
        s3.create_bucket(Bucket=BUCKET)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise


def objects(*, state: Path) -> list[dict[str, Any]]:
    """The namespace, credentials Secret, Service and EndpointSlice that expose S3 in-cluster."""
    meta = {"namespace": NAMESPACE}
    creds = credentials(state=state)
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in creds.items()}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, **meta},
         "type": "Opaque", "data": encoded},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s3", **meta},
         "spec": {"ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "s3-host", **meta, "labels": {
             "kubernetes.io/service-name": "s3",
             "endpointslice.kubernetes.io/managed-by": "loopwright-cluster"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
         "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}]},
    ]
