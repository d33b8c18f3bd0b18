"""The container's termination message: how a pod tells Kubernetes (and so the operator) why it ended.

Kubernetes keeps up to 4096 bytes written to ``/dev/termination-log`` in the container status
(``state.terminated.message``, then ``lastState``), where the operator reads a Job's summary and
a predictor's reason for refusing to serve.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LOOPWRIGHT_TERMINATION_LOG"
_DEFAULT = "/dev/termination-log"


def write(message: str) -> None:
    """Write where Kubernetes looks, if that file exists (it is created by the runtime).

    An explicit ``LOOPWRIGHT_TERMINATION_LOG`` is written even if absent; the default path is
    never created, so running a Job's or the predictor's command on a host does not litter ``/dev``.
    """
    explicit = os.environ.get(ENV)
    path = Path(explicit or _DEFAULT)
    if not explicit and not path.exists():
        return
    try:
        path.write_text(message)
    except OSError:
        return
