"""Installs this checkout's CRDs (crds/*.yaml) into a cluster: for the e2e fixtures and the benchmarks.

Create, or replace what an earlier checkout installed, then wait until each is Established, so
the first object of a kind is not refused with 404. The CRDs are left installed: deleting one
would delete every object of its kind in the cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

CRD_DIR = Path(__file__).resolve().parents[1] / "crds"


@dataclass(frozen=True)
class Crd:
    """Where the API serves one of our kinds."""

    group: str
    version: str
    plural: str


def install_crds(api: client.ApiClient, *, timeout: float = 30.0) -> dict[str, Crd]:
    """Install crds/*.loopwright.dev.yaml and wait until Established; returns kind -> where it is served."""
    extensions = client.ApiextensionsV1Api(api)
    served: dict[str, Crd] = {}
    for path in sorted(CRD_DIR.glob("*.loopwright.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        try:
            extensions.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as error:
            if error.status != 409:
                raise
            crd["metadata"]["resourceVersion"] = extensions.read_custom_resource_definition(
                name).metadata.resource_version
            extensions.replace_custom_resource_definition(name, crd)
        spec = crd["spec"]
        storage = next(v["name"] for v in spec["versions"] if v["storage"])
        served[spec["names"]["kind"]] = Crd(spec["group"], storage, spec["names"]["plural"])
        _wait_established(extensions, name=name, timeout=timeout)
    return served


def _wait_established(extensions: client.ApiextensionsV1Api, *, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        conditions = extensions.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
        time.sleep(0.2)
