"""The S3 server is real and reachable from pods at s3.loopwright-system.svc, as the contract says."""
from __future__ import annotations

import hashlib
import uuid

import boto3
import botocore.exceptions
import pytest

from conftest import S3, S3_SECRET, Kube

pytestmark = pytest.mark.cluster

IMAGE = "loopwright/operator:0.1.0"  # carries boto3
_PUT = """
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])  # credentials from AWS_* (secretKeyRef)
s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.argv[4].encode())
print(s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3])["ETag"].strip('"'))
"""


def test_bucket_exists_and_credentials_are_checked(s3: S3) -> None:
    key = f"tests/{uuid.uuid4().hex}.txt"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"hello")
    assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == b"hello"
    impostor = boto3.client("s3", endpoint_url=s3.endpoint, region_name=s3.region,
                            aws_access_key_id=s3.access_key, aws_secret_access_key="wrong" * 8)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        impostor.get_object(Bucket=s3.bucket, Key=key)
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_pod_writes_to_s3_through_the_service(kube: Kube, namespace: str, s3: S3) -> None:
    # The operator copies this Secret into job namespaces; the test does the same.
    source = kube.core.read_namespaced_secret(S3_SECRET[1], S3_SECRET[0])
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "s3"}, "data": source.data})
    key, body = f"tests/{namespace}/from-pod.txt", uuid.uuid4().hex
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": "s3", "key": name}}}
           for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    env.append({"name": "AWS_DEFAULT_REGION", "value": s3.region})
    pod = kube.run_pod(namespace, {"metadata": {"name": "writer"}, "spec": {"containers": [{
        "name": "main", "image": IMAGE, "env": env,
        "command": ["python3", "-c", _PUT, s3.in_cluster, s3.bucket, key, body]}]}})

    output = kube.logs(namespace, "writer")
    assert kube.exit_code(pod) == 0, output
    assert output.strip() == hashlib.md5(body.encode()).hexdigest()  # single-part ETag = MD5
    assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode() == body
