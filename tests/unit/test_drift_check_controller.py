"""The DriftPolicy controller's small decisions that need no cluster: whose retrain request wins, ports."""

from types import SimpleNamespace

from loopwright.controllers import driftpolicy


def test_only_an_earlier_request_of_the_same_policy_is_replaced():
    older = driftpolicy._older_request
    assert older("watch-100", policy="watch", than="watch-200")
    assert not older("watch-300", policy="watch", than="watch-200")  # ours is the older one
    assert not older("watch-200", policy="watch", than="watch-200")
    assert not older("manual-1", policy="watch", than="watch-200")  # a person's request stays
    assert not older("watch-x-100", policy="watch", than="watch-200")
    # Another policy whose name starts with ours is not ours.
    assert not older("watch-2-100", policy="watch", than="watch-200")


def _pod(*ports: tuple[str | None, int]) -> SimpleNamespace:
    container = SimpleNamespace(ports=[SimpleNamespace(name=n, container_port=p) for n, p in ports])
    return SimpleNamespace(spec=SimpleNamespace(containers=[container]))


def test_predictor_port_from_the_pod_spec():
    assert driftpolicy._port(_pod(("metrics", 9000), ("http", 8081))) == 8081
    assert driftpolicy._port(_pod((None, 7000))) == 7000
    assert driftpolicy._port(_pod()) == driftpolicy.DEFAULT_PORT
