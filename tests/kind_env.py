"""Where the host reaches the kind cluster of `make kind-up`: its kubeconfig and its S3 endpoint.

The S3 port is the one the cluster was made with, which images/kind/cluster.sh writes beside the
kubeconfig: 9900 when that was free, else a free port, so a cluster the engine already holds 9900
for never blocks `make kind-up`. KIND_S3_PORT, when set, wins (it is what the cluster was asked for).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KIND_KUBECONFIG = os.environ.get("KIND_KUBECONFIG", str(REPO / ".cluster" / "kind" / "kubeconfig"))


def s3_port() -> int:
    """The host port of the cluster's S3 NodePort (read when needed: kind-up may just have run)."""
    if os.environ.get("KIND_S3_PORT"):
        return int(os.environ["KIND_S3_PORT"])
    recorded = Path(f"{KIND_KUBECONFIG}.s3-port")
    try:
        return int(recorded.read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"no S3 port recorded in {recorded}: run make kind-up") from exc


def s3_endpoint() -> str:
    return f"http://127.0.0.1:{s3_port()}"
