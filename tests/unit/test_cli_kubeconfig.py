"""The plugin reads a kubeconfig as kubectl does: merged files, contexts, namespaces, credentials."""

from __future__ import annotations

import base64
import datetime
import ssl
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from loopwright.cli import kubeconfig
from loopwright.cli.errors import CliError


def _pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jane")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _write(
    path: Path,
    *,
    contexts: list[dict],
    users: list[dict],
    current: str | None = None,
    clusters: list[dict] | None = None,
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": current,
                "clusters": clusters
                if clusters is not None
                else [
                    {
                        "name": "c",
                        "cluster": {"server": "https://10.0.0.1:6443/", "insecure-skip-tls-verify": True},
                    }
                ],
                "contexts": contexts,
                "users": users,
            }
        )
    )
    return path


def test_files_merge_first_wins_and_the_contexts_namespace_is_used(tmp_path, monkeypatch):
    first = _write(
        tmp_path / "a",
        current="dev",
        users=[{"name": "jane", "user": {"token": "t1"}}],
        contexts=[{"name": "dev", "context": {"cluster": "c", "user": "jane", "namespace": "ml"}}],
    )
    second = _write(
        tmp_path / "b",
        current="prod",
        users=[{"name": "jane", "user": {"token": "ignored"}}, {"name": "ops", "user": {"token": "t2"}}],
        contexts=[{"name": "prod", "context": {"cluster": "c", "user": "ops"}}],
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    conn = kubeconfig.load()
    assert (conn.context, conn.namespace, conn.server) == ("dev", "ml", "https://10.0.0.1:6443")
    assert conn.headers == {"Authorization": "Bearer t1"}
    prod = kubeconfig.load(context="prod", namespace="other")
    assert (prod.namespace, prod.headers["Authorization"]) == ("other", "Bearer t2")
    assert kubeconfig.load(context="prod").namespace == "default"
    with pytest.raises(CliError, match=r"context 'nope' is not in the kubeconfig \(contexts: dev, prod\)"):
        kubeconfig.load(context="nope")


def test_client_certificates_from_data_or_files_relative_to_the_kubeconfig(tmp_path, monkeypatch):
    cert, key = _pem_pair()
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "jane.crt").write_bytes(cert)
    (tmp_path / "certs" / "jane.key").write_bytes(key)
    ca = base64.b64encode(cert).decode()
    clusters = [{"name": "c", "cluster": {"server": "https://k:6443", "certificate-authority-data": ca}}]
    for user in (
        {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        },
        {"client-certificate": "certs/jane.crt", "client-key": "certs/jane.key"},
    ):
        path = _write(
            tmp_path / "config",
            current="x",
            clusters=clusters,
            users=[{"name": "u", "user": user}],
            contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        )
        conn = kubeconfig.load(kubeconfig=str(path))
        assert isinstance(conn.ssl_context, ssl.SSLContext)
        assert conn.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert conn.headers == {}


def test_exec_credential_plugins_run_with_their_env(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os, sys\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'kind': 'ExecCredential',\n"
        "                  'status': {'token': os.environ['TEAM'] + '-' + sys.argv[1]}}))\n"
    )
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin), "abc"],
            "env": [{"name": "TEAM", "value": "ml"}],
        }
    }
    path = _write(
        tmp_path / "config",
        current="x",
        users=[{"name": "u", "user": user}],
        contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    assert kubeconfig.load(kubeconfig=str(path)).headers == {"Authorization": "Bearer ml-abc"}
    user["exec"]["args"] = ["-c", "import sys; sys.stderr.write('login expired\\n'); sys.exit(3)"]
    path = _write(
        tmp_path / "config",
        current="x",
        users=[{"name": "u", "user": user}],
        contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    with pytest.raises(CliError, match="exited with 3: login expired"):
        kubeconfig.load(kubeconfig=str(path))


def test_legacy_auth_providers_and_proxies_are_refused_by_name(tmp_path):
    path = _write(
        tmp_path / "config",
        current="x",
        users=[{"name": "u", "user": {"auth-provider": {"name": "gcp"}}}],
        contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    with pytest.raises(CliError, match="legacy auth-provider 'gcp'"):
        kubeconfig.load(kubeconfig=str(path))
    path = _write(
        tmp_path / "config",
        current="x",
        users=[{"name": "u", "user": {"token": "t"}}],
        clusters=[{"name": "c", "cluster": {"server": "https://k", "proxy-url": "http://proxy:3128"}}],
        contexts=[{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    )
    with pytest.raises(CliError, match="proxy-url"):
        kubeconfig.load(kubeconfig=str(path))
    with pytest.raises(CliError, match="does not exist"):
        kubeconfig.load(kubeconfig=str(tmp_path / "missing"))
    (tmp_path / "broken").write_text("{: [")
    with pytest.raises(CliError, match="cannot read kubeconfig"):
        kubeconfig.load(kubeconfig=str(tmp_path / "broken"))
