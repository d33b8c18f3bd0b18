"""The user's kubeconfig, as kubectl reads it: files, context, namespace, TLS and credentials.

The plugin talks to the API server with the user's own identity, so RBAC applies to it as it
does to kubectl. Supported, as kubectl does them: ``KUBECONFIG`` with several files (the first
file to define a name wins), ``--kubeconfig``, ``--context``, the context's namespace, client
certificates (files or data), bearer tokens (``token``, ``tokenFile``), basic auth, ``exec``
credential plugins (EKS, GKE, AKS, OIDC helpers) and, without any kubeconfig, a pod's service
account. Not supported: the legacy ``auth-provider`` entries (kubectl itself replaced them with
exec plugins) and ``proxy-url``; both are refused with a message rather than ignored.

This module and :mod:`loopwright.cli.kubeapi` use the standard library only: importing the
``kubernetes`` package costs about a second, on every command.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loopwright.cli.errors import CliError

_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_EXEC_TIMEOUT = 60.0


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate to it."""

    server: str
    namespace: str
    context: str
    ssl_context: ssl.SSLContext | None
    headers: Mapping[str, str] = field(default_factory=dict)


def _paths(explicit: str | None) -> list[Path]:
    if explicit:
        return [Path(explicit).expanduser()]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _merged(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """One config from several files: the first file to define a name (or current-context) wins.

    Also returns, per cluster and user name, the file that defined it: relative paths in an
    entry are relative to its own file.
    """
    merged: dict[str, Any] = {"clusters": {}, "users": {}, "contexts": {}, "current-context": None}
    origin: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CliError(f"cannot read kubeconfig {path}: {exc}") from exc
        if not isinstance(doc, dict):
            raise CliError(f"kubeconfig {path} is not a mapping")
        for section, key in (("clusters", "cluster"), ("users", "user"), ("contexts", "context")):
            for entry in doc.get(section) or ():
                name = entry.get("name")
                if name is not None and name not in merged[section]:
                    merged[section][name] = entry.get(key) or {}
                    origin[f"{section}/{name}"] = path
        merged["current-context"] = merged["current-context"] or doc.get("current-context")
    return merged, origin


def load(*, kubeconfig: str | None = None, context: str | None = None,
         namespace: str | None = None) -> Connection:
    """The connection kubectl would use with the same flags and environment."""
    paths = _paths(kubeconfig)
    if kubeconfig and not paths[0].is_file():
        raise CliError(f"kubeconfig {paths[0]} does not exist")
    merged, origin = _merged(paths)
    if not merged["contexts"]:
        if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST") and _SERVICE_ACCOUNT.is_dir():
            return _in_cluster(namespace)
        raise CliError("no kubeconfig found (" + os.pathsep.join(str(p) for p in paths)
                       + "): set KUBECONFIG or pass --kubeconfig")
    name = context or merged["current-context"]
    if not name:
        raise CliError("the kubeconfig has no current-context: pass --context")
    ctx = merged["contexts"].get(name)
    if ctx is None:
        raise CliError(f"context {name!r} is not in the kubeconfig (contexts: "
                       f"{', '.join(sorted(merged['contexts']))})")
    cluster = merged["clusters"].get(ctx.get("cluster"))
    if cluster is None or not cluster.get("server"):
        raise CliError(f"context {name!r} names cluster {ctx.get('cluster')!r}, which has no server")
    if cluster.get("proxy-url"):
        raise CliError(f"cluster {ctx.get('cluster')!r} uses proxy-url, which kubectl-loopwright does not "
                       "support yet")
    user = merged["users"].get(ctx.get("user"), {})
    base = origin.get(f"clusters/{ctx.get('cluster')}", paths[0]).parent
    user_base = origin.get(f"users/{ctx.get('user')}", paths[0]).parent
    ssl_context = _tls(cluster, base) if cluster["server"].startswith("https://") else None
    headers = _credentials(user, user_base, ssl_context, user_name=str(ctx.get("user")))
    return Connection(server=cluster["server"].rstrip("/"), namespace=namespace or ctx.get("namespace")
                      or "default", context=name, ssl_context=ssl_context, headers=headers)


def _in_cluster(namespace: str | None) -> Connection:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    ctx = ssl.create_default_context(cafile=str(_SERVICE_ACCOUNT / "ca.crt"))
    token = (_SERVICE_ACCOUNT / "token").read_text().strip()
    own = (_SERVICE_ACCOUNT / "namespace").read_text().strip()
    return Connection(server=f"https://{host}:{port}", namespace=namespace or own or "default",
                      context="in-cluster", ssl_context=ctx, headers={"Authorization": f"Bearer {token}"})


def _path(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _tls(cluster: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    if cluster.get("insecure-skip-tls-verify"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if cluster.get("certificate-authority-data"):
            pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
            return ssl.create_default_context(cadata=pem)
        if cluster.get("certificate-authority"):
            return ssl.create_default_context(cafile=_path(cluster["certificate-authority"], base))
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise CliError(f"cannot load the cluster's certificate authority: {exc}") from exc
    return ssl.create_default_context()


def _load_client_cert(ctx: ssl.SSLContext, cert: str | bytes, key: str | bytes) -> None:
    """Client certificate and key from files (str) or PEM data (bytes, through a private temp dir)."""
    if isinstance(cert, str) and isinstance(key, str):
        ctx.load_cert_chain(cert, key)
        return
    with tempfile.TemporaryDirectory(prefix="kubectl-loopwright-") as tmp:
        paths = []
        for name, value in (("cert.pem", cert), ("key.pem", key)):
            path = Path(tmp) / name
            path.touch(mode=0o600)
            path.write_bytes(value if isinstance(value, bytes) else Path(value).read_bytes())
            paths.append(str(path))
        ctx.load_cert_chain(paths[0], paths[1])


def _credentials(user: Mapping[str, Any], base: Path, ctx: ssl.SSLContext | None, *,
                 user_name: str) -> dict[str, str]:
    if user.get("auth-provider"):
        provider = (user["auth-provider"] or {}).get("name", "?")
        raise CliError(f"user {user_name!r} uses the legacy auth-provider {provider!r}: switch to its "
                       "exec credential plugin (e.g. gke-gcloud-auth-plugin, kubelogin), as kubectl 1.26+ "
                       "requires")
    cert: str | bytes | None = None
    key: str | bytes | None = None
    if user.get("client-certificate-data") or user.get("client-certificate"):
        cert = (base64.b64decode(user["client-certificate-data"]) if user.get("client-certificate-data")
                else _path(user["client-certificate"], base))
        key = (base64.b64decode(user["client-key-data"]) if user.get("client-key-data")
               else _path(user.get("client-key", ""), base))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(_path(user["tokenFile"], base)).read_text().strip()
    if user.get("exec"):
        token, cert, key = _exec(user["exec"], user_name=user_name, token=token, cert=cert, key=key)
    if cert is not None and key is not None:
        if ctx is None:
            raise CliError(f"user {user_name!r} has a client certificate but the server is not https")
        try:
            _load_client_cert(ctx, cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise CliError(f"cannot load the client certificate of user {user_name!r}: {exc}") from exc
    if token:
        return {"Authorization": f"Bearer {token}"}
    if user.get("username") and user.get("password"):
        basic = base64.b64encode(f"{user['username']}:{user['password']}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    return {}


def _exec(spec: Mapping[str, Any], *, user_name: str, token: str | None, cert: str | bytes | None,
          key: str | bytes | None) -> tuple[str | None, str | bytes | None, str | bytes | None]:
    """Run an exec credential plugin (client.authentication.k8s.io ExecCredential)."""
    command = spec.get("command")
    if not command:
        raise CliError(f"user {user_name!r}: exec has no command")
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or () if "name" in e}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps({
        "apiVersion": api_version, "kind": "ExecCredential",
        "spec": {"interactive": sys.stdin.isatty()},
    })
    try:
        done = subprocess.run([command, *(spec.get("args") or ())], env=env, capture_output=True,
                              timeout=_EXEC_TIMEOUT, check=False, stdin=None)
    except (OSError, subprocess.TimeoutExpired) as exc:
        hint = f" ({spec['installHint'].strip()})" if spec.get("installHint") else ""
        raise CliError(f"credential plugin {command!r} of user {user_name!r} failed: {exc}{hint}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CliError(f"credential plugin {command!r} of user {user_name!r} exited with "
                       f"{done.returncode}: {tail[0]}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except ValueError as exc:
        raise CliError(f"credential plugin {command!r} printed no ExecCredential JSON") from exc
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        cert, key = status["clientCertificateData"].encode(), status["clientKeyData"].encode()
    return status.get("token") or token, cert, key
