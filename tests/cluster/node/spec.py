"""Pure translation of a pod spec into what a local process needs: argv, env and volume files.

Everything here is a function of the pod and the objects it references (fetched by the caller),
so the kubelet rules it mirrors (Service links, $(VAR) expansion, the downward API, key projection
into files) are unit-tested without a cluster.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

# What a container image would carry as PATH; host commands are found here, never in the
# developer's shell PATH (pyenv shims, virtualenvs) so pods behave the same for everyone.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROJECT_IMAGE_PREFIX = "loopwright/"
MASTER_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUFFIXES: dict[str, int | Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class ConfigError(Exception):
    """The pod cannot start yet (a missing Secret, key, ...): the kubelet keeps retrying."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def parse_quantity(text: str | int | float) -> Decimal:
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a quantity: {text!r}")
    return Decimal(match.group(1)) * Decimal(_SUFFIXES[match.group(2)])


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubelet's $(VAR) expansion: known names expand, `$$` escapes, anything else stays as is."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and (end := text.find(")", i + 2)) != -1:
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_")


def service_env(services: Iterable[Obj], *, namespace: str, enable_links: bool) -> dict[str, str]:
    """The docker-link style variables the kubelet injects for Services, as kubelet's envvars does.

    Master services (`default/kubernetes`) are always present; the pod's own namespace's Services
    only with enableServiceLinks (on by default), and they win over a master one of the same name.
    """
    chosen: dict[str, Obj] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = meta["name"]
        if meta["namespace"] == namespace and (enable_links or (namespace == MASTER_NAMESPACE
                                               and name in MASTER_SERVICES)):
            chosen[name] = svc
        elif meta["namespace"] == MASTER_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
    env: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        ip, ports = spec["clusterIP"], spec.get("ports", [])
        key = _env_key(name)
        env[f"{key}_SERVICE_HOST"] = ip
        if ports:
            env[f"{key}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            if port.get("name"):
                env[f"{key}_SERVICE_PORT_{_env_key(port['name'])}"] = str(port["port"])
        for index, port in enumerate(ports):
            proto = port.get("protocol", "TCP")
            url = f"{proto.lower()}://{ip}:{port['port']}"
            if index == 0:
                env[f"{key}_PORT"] = url
            prefix = f"{key}_PORT_{port['port']}_{proto.upper()}"
            env[prefix] = url
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(port["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


@dataclass(frozen=True)
class PodContext:
    """Facts about the running pod that the downward API exposes besides the pod object."""

    pod: Obj
    pod_ip: str
    host_ip: str
    node_allocatable: Mapping[str, str]


def _format_map(values: Mapping[str, str]) -> str:
    return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))


def field_value(ctx: PodContext, path: str) -> str:
    meta, spec = ctx.pod["metadata"], ctx.pod["spec"]
    if match := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str(meta.get(match.group(1), {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "metadata.labels": _format_map(meta.get("labels", {})),
        "metadata.annotations": _format_map(meta.get("annotations", {})),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
    }
    if path not in simple:
        raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")
    return str(simple[path])


def resource_value(ctx: PodContext, ref: Obj, *, default_container: str) -> str:
    """resourceFieldRef: the container's limit (node allocatable if unset) or request, / divisor."""
    name = ref.get("containerName") or default_container
    container = next((c for c in ctx.pod["spec"]["containers"] if c["name"] == name), None)
    if container is None:
        raise ConfigError("CreateContainerConfigError", f"resourceFieldRef: no container {name!r}")
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources", {})
    raw = resources.get(kind, {}).get(resource)
    if raw is None and kind == "requests":
        raw = resources.get("limits", {}).get(resource)
    if raw is None:
        raw = ctx.node_allocatable.get(resource, "0") if kind == "limits" else "0"
    value = parse_quantity(raw) / parse_quantity(ref.get("divisor", "1"))
    return str(math.ceil(value))


def _lookup(objects: Mapping[str, Obj | None], kind: str, name: str, key: str | None,
            *, optional: bool) -> str | None:
    obj = objects.get(name)
    if obj is None:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'{kind} "{name}" not found')
    if key is None:
        return ""
    data = decoded_data(obj, secret=kind == "secret")
    if key not in data:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'couldn\'t find key {key} in {kind} "{name}"')
    return data[key].decode()


def decoded_data(obj: Obj, *, secret: bool) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as bytes (Secret data and binaryData are base64 on the wire)."""
    data: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        data[key] = base64.b64decode(value) if secret else value.encode()
    for key, value in (obj.get("binaryData") or {}).items():
        data[key] = base64.b64decode(value)
    return data


def container_env(ctx: PodContext, container: Obj, *, services_env: Mapping[str, str],
                  configmaps: Mapping[str, Obj | None], secrets: Mapping[str, Obj | None],
                  base: Mapping[str, str]) -> dict[str, str]:
    """The process environment, in kubelet's order: envFrom, then env, then unset Service links.

    `base` (PATH, HOSTNAME, HOME) is what the image would set; the pod's own values override it.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if ref := source.get("configMapRef"):
            kind, objects = "configmap", configmaps
        else:
            ref, kind, objects = source["secretRef"], "secret", secrets
        if _lookup(objects, kind, ref["name"], None, optional=ref.get("optional", False)) is None:
            continue
        obj = objects[ref["name"]]
        assert obj is not None
        for key, raw in decoded_data(obj, secret=kind == "secret").items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = raw.decode()
    lookup_env = {**services_env, **env}
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            value: str | None = expand(item.get("value", ""), {**lookup_env, **env})
        else:
            source = item["valueFrom"]
            if ref := source.get("fieldRef"):
                value = field_value(ctx, ref["fieldPath"])
            elif ref := source.get("resourceFieldRef"):
                value = resource_value(ctx, ref, default_container=container["name"])
            elif ref := source.get("configMapKeyRef"):
                value = _lookup(configmaps, "configmap", ref["name"], ref["key"],
                                optional=ref.get("optional", False))
            elif ref := source.get("secretKeyRef"):
                value = _lookup(secrets, "secret", ref["name"], ref["key"],
                                optional=ref.get("optional", False))
            else:
                raise ConfigError("CreateContainerConfigError", f"env {name}: unsupported valueFrom")
        if value is not None:
            env[name] = value
    for key, link in services_env.items():
        env.setdefault(key, link)
    return {**base, **env}


def referenced_names(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's env and volumes read (fetched before start)."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    spec = pod["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                configmaps.add(source["configMapRef"]["name"])
            if "secretRef" in source:
                secrets.add(source["secretRef"]["name"])
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "configMapKeyRef" in source:
                configmaps.add(source["configMapKeyRef"]["name"])
            if "secretKeyRef" in source:
                secrets.add(source["secretKeyRef"]["name"])
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            configmaps.add(volume["configMap"]["name"])
        if "secret" in volume:
            secrets.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                configmaps.add(source["configMap"]["name"])
            if "secret" in source:
                secrets.add(source["secret"]["name"])
    return configmaps, secrets


def image_path(image: str, *, venv_bin: Path) -> str:
    """The PATH an image provides: this project's images run from the repository's virtualenv."""
    if image.startswith(PROJECT_IMAGE_PREFIX):
        return f"{venv_bin}:{SYSTEM_PATH}"
    return SYSTEM_PATH


def hidden_path_mounts(image: str, *, user: int | None, paths: Sequence[Path],
                       traversable: Callable[[Path], bool]) -> list[tuple[str, str, str]]:
    """Mounts that let a non-root container of this project's images reach host installations.

    An image would carry its Python and the package; here both live on the host (the venv's
    interpreter, the checkout the editable install points into), possibly under a directory other
    users cannot enter: pyenv under /root, a CI clone under a `mktemp -d` folder (mode 0700). The
    container gets a private tmpfs over the topmost such directory of each path, with only the
    paths bound back in: nothing else of those directories.
    """
    if not image.startswith(PROJECT_IMAGE_PREFIX) or not user:
        return []
    hidden: list[Path] = []
    for path in paths:
        top = next((p for p in reversed(path.parents) if not traversable(p)), None)
        if top is not None and not any(top == h or h in top.parents for h in hidden):
            hidden = [h for h in hidden if top not in h.parents] + [top]
    exposed = [path for path in paths if any(h in path.parents for h in hidden)]
    return [*(("tmpfs", str(h), "tmpfs") for h in hidden),
            *((str(path), str(path), "ro") for path in exposed)]


def project_mounts(image: str, *, project: Path) -> list[tuple[str, str, str]]:
    """The checkout, bound back over itself (read-only) for this project's images.

    An image would carry the package; here the venv's editable install points into the checkout on
    the host, which a volume can cover: the restricted Jobs mount an emptyDir at /tmp, and a
    checkout under /tmp (as CI clones can be) would vanish. Listed after the volumes, this mount
    comes from a descriptor opened before any of them, so it restores the checkout whatever covers it.
    """
    if not image.startswith(PROJECT_IMAGE_PREFIX):
        return []
    return [(str(project), str(project), "ro")]


def account_files(image: str, *, user: int | None, group: int | None, passwd: str, groups: str
                  ) -> dict[str, str]:
    """/etc/passwd and /etc/group for a project container running as a uid the host lacks.

    This project's images are distroless-style and know their non-root user (65532 "nonroot");
    software asks for the name (getpass.getuser() in the kubernetes client), so the container
    gets the host's files plus that entry. Returns {target path: content}, empty if not needed.
    """
    if not image.startswith(PROJECT_IMAGE_PREFIX) or not user:
        return {}
    files: dict[str, str] = {}
    gid = group or 0
    if not any(line.split(":")[2:3] == [str(user)] for line in passwd.splitlines()):
        name = "nonroot" if user == 65532 else f"user{user}"
        entry = f"{name}:x:{user}:{gid}:{name}:/home/{name}:/sbin/nologin"
        files["/etc/passwd"] = passwd.rstrip("\n") + f"\n{entry}\n"
    if gid and not any(line.split(":")[2:3] == [str(gid)] for line in groups.splitlines()):
        name = "nonroot" if gid == 65532 else f"group{gid}"
        files["/etc/group"] = groups.rstrip("\n") + f"\n{name}:x:{gid}:\n"
    return files


def container_argv(container: Obj, env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expansion; without a command the args run as the command.

    This project's images have the console script `loopwright-<name>` as their entrypoint; other images are
    assumed to have no entrypoint (busybox, python), so their args are the whole command line.
    """
    command = [expand(a, env) for a in container.get("command", [])]
    args = [expand(a, env) for a in container.get("args", [])]
    if not command:
        image = container.get("image", "")
        if image.startswith(PROJECT_IMAGE_PREFIX):
            name = image[len(PROJECT_IMAGE_PREFIX):].split(":")[0].split("@")[0]
            command = [f"loopwright-{name}"]
    argv = command + args
    if not argv:
        raise ConfigError("CreateContainerConfigError",
                          f"image {container.get('image')!r} has no entrypoint here: set command")
    return argv


def find_executable(argv0: str, *, path: str, workdir: str) -> str | None:
    if "/" in argv0:
        candidate = Path(workdir, argv0)
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which(argv0, path=path)


@dataclass(frozen=True)
class File:
    path: str  # relative to the volume's root
    data: bytes
    mode: int


def _project_keys(data: Mapping[str, bytes], items: list[Obj] | None, *, kind: str, name: str,
                  mode: int, optional: bool) -> list[File]:
    if not items:
        return [File(key, value, mode) for key, value in sorted(data.items())]
    files = []
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise ConfigError("FailedMount", f'{kind} "{name}": no key {item["key"]!r}')
        files.append(File(item["path"], data[item["key"]], item.get("mode", mode)))
    return files


def _object_files(objects: Mapping[str, Obj | None], kind: str, name: str, items: list[Obj] | None,
                  *, mode: int, optional: bool) -> list[File]:
    obj = objects.get(name)
    if obj is None:
        if optional:
            return []
        raise ConfigError("FailedMount", f'{kind} "{name}" not found')
    data = decoded_data(obj, secret=kind == "secret")
    return _project_keys(data, items, kind=kind, name=name, mode=mode, optional=optional)


def _downward_files(ctx: PodContext, items: list[Obj], *, mode: int) -> list[File]:
    files = []
    first = ctx.pod["spec"]["containers"][0]["name"]
    for item in items:
        if "fieldRef" in item:
            value = field_value(ctx, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(ctx, item["resourceFieldRef"], default_container=first)
        files.append(File(item["path"], value.encode(), item.get("mode", mode)))
    return files


def token_sources(volume: Obj) -> list[Obj]:
    """The serviceAccountToken projections of a volume (each needs a TokenRequest)."""
    return [s["serviceAccountToken"] for s in volume.get("projected", {}).get("sources", [])
            if "serviceAccountToken" in s]


def volume_files(ctx: PodContext, volume: Obj, *, configmaps: Mapping[str, Obj | None],
                 secrets: Mapping[str, Obj | None], tokens: Mapping[str, str]) -> list[File] | None:
    """The files of a content volume; None for volumes that are plain directories (emptyDir...).

    `tokens` maps a token projection's path to the token the API issued for it.
    """
    if cm := volume.get("configMap"):
        return _object_files(configmaps, "configmap", cm["name"], cm.get("items"),
                             mode=cm.get("defaultMode", 0o644), optional=cm.get("optional", False))
    if secret := volume.get("secret"):
        return _object_files(secrets, "secret", secret["secretName"], secret.get("items"),
                             mode=secret.get("defaultMode", 0o644), optional=secret.get("optional", False))
    if downward := volume.get("downwardAPI"):
        return _downward_files(ctx, downward.get("items", []), mode=downward.get("defaultMode", 0o644))
    if projected := volume.get("projected"):
        mode = projected.get("defaultMode", 0o644)
        files: list[File] = []
        for source in projected.get("sources", []):
            if sa := source.get("serviceAccountToken"):
                files.append(File(sa["path"], tokens[sa["path"]].encode(), mode))
            elif cm := source.get("configMap"):
                files += _object_files(configmaps, "configmap", cm["name"], cm.get("items"),
                                       mode=mode, optional=cm.get("optional", False))
            elif secret := source.get("secret"):
                files += _object_files(secrets, "secret", secret["name"], secret.get("items"),
                                       mode=mode, optional=secret.get("optional", False))
            elif downward := source.get("downwardAPI"):
                files += _downward_files(ctx, downward.get("items", []), mode=mode)
        return files
    return None


def resolv_conf(*, namespace: str, nameserver: str, cluster_domain: str = "cluster.local") -> str:
    search = f"{namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}"
    return f"search {search}\nnameserver {nameserver}\noptions ndots:5\n"


def etc_hosts(*, pod_ip: str, hostname: str) -> str:
    return ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
            f"::1\tlocalhost ip6-localhost ip6-loopback\n{pod_ip}\t{hostname}\n")
