"""The runtime's API client over HTTP: kopf's kubeconfig login, the bearer token, paths, 404, merge patch.

Against the small loopback API server of the CLI tests (fake_kube), so the wire is real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import kopf
import pytest

from loopwright.api import names
from loopwright.api.kinds import DATASET
from loopwright.operator.runtime.client import ApiError, Client, Credentials, resource
from unit.fake_kube import FakeKube

DS = resource(DATASET)


def test_the_client_logs_in_as_kopf_does_and_speaks_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = {"apiVersion": "loopwright.dev/v1alpha1", "kind": "Dataset",
               "metadata": {"name": "d", "namespace": "ns"}, "spec": {}}
    with FakeKube({names.DATASET: [dataset]}, namespace="ns").running() as fake:
        monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "config")))
        credentials = Credentials()
        assert credentials.login(kopf.OperatorSettings()) is not None
        client = Client(credentials)

        async def calls() -> None:
            try:
                found = await client.get(DS, "ns", "d")
                assert found is not None
                assert found["metadata"]["name"] == "d"
                assert await client.get(DS, "ns", "missing") is None
                (listed,) = await client.list(DS, "ns")
                assert listed["kind"] == "Dataset"
                patched = await client.patch(DS, "ns", "d", {"status": {"rows": 3}})
                assert patched["status"] == {"rows": 3}
                fake.forbidden.add(("get", "datasets"))
                with pytest.raises(ApiError) as refused:
                    await client.get(DS, "ns", "d")
                assert refused.value.status == 403
                assert 'cannot get resource "datasets"' in refused.value.message
            finally:
                await client.close()

        asyncio.run(calls())
    where = "/apis/loopwright.dev/v1alpha1/namespaces/ns/datasets"
    assert all(path.startswith(where) for _, path, _ in fake.requests)
