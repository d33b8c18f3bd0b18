"""Waits the fault cases share."""

from __future__ import annotations

from typing import Any

from e2e import deployment_support as lw


def load_refused(kube: Any, namespace: str, name: str, version: int, *,
                 timeout: float = 240) -> dict[str, Any]:
    """The Deployment's ModelLoaded condition once it says `version`'s predictor could not load."""
    def probe() -> dict[str, Any] | None:
        loaded = lw.condition(lw.get(kube, namespace, "deployments", name), "ModelLoaded") or {}
        ok = loaded.get("status") == "False" and f"version {version} " in loaded.get("message", "")
        return loaded if ok else None

    found: dict[str, Any] = kube.wait(probe, timeout=timeout, what=f"version {version}'s load refused",
                                      interval=1)
    return found
