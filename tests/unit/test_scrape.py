"""The shared /metrics scraper: text parsing, histogram quantiles, concurrent pod fetches."""

from __future__ import annotations

import asyncio
import math
import socket
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from loopwright.core.exposition import (
    PodTarget,
    Sample,
    histogram_buckets,
    histogram_quantile,
    parse_prometheus,
)
from loopwright.core.profile import profile_categorical, profile_numeric
from loopwright.operator.probes.scrape import fetch_pod_metrics, pod_target
from loopwright.serving.decode import Batch
from loopwright.serving.metrics import Metrics


def test_parse_plain_labelled_and_special_values() -> None:
    text = (
        "# HELP up whether\n# TYPE up gauge\n"
        "up 1\n"
        'req_total{model="m",code="200"} 12 1700000000000\n'
        'req_total{ model = "m" , code="500", } 3\n'
        'lat_bucket{le="+Inf"} +Inf\n'
        "weird NaN\n"
        "\n"
    )
    samples = parse_prometheus(text)
    assert [s.name for s in samples] == ["up", "req_total", "req_total", "lat_bucket", "weird"]
    assert samples[1] == Sample("req_total", {"model": "m", "code": "200"}, 12.0)
    assert samples[2].labels == {"model": "m", "code": "500"}
    assert math.isinf(samples[3].value)
    assert math.isnan(samples[4].value)


def test_parse_escapes_and_braces_inside_values() -> None:
    samples = parse_prometheus('f{feature="a\\"b}\\\\c\\nd",bin="0"} 2\n')
    assert samples == [Sample("f", {"feature": 'a"b}\\c\nd', "bin": "0"}, 2.0)]


@pytest.mark.parametrize("line", ['x{a="1"', 'x{a=1} 2', "x", 'x{a="1"} 1 2 3', 'x{a="1" b="2"} 1', "x abc"])
def test_parse_rejects_malformed_lines_with_their_number(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_prometheus("ok 1\n" + line + "\n")


def _predictor_metrics() -> Metrics:
    rng = np.random.default_rng(1)
    num = rng.normal(size=500)
    metrics = Metrics(
        model='m"odel', version="3",
        features=[("x", profile_numeric(num)), ("c", profile_categorical(["a", "b", "a"]))],
        prediction=profile_categorical(["0", "1"], categories=["0", "1"]))
    batch = Batch(rows=50, numeric=num[:50, None], categorical={"c": ["a"] * 25 + ["z"] * 25})
    metrics.observe_batch(batch, np.asarray([0, 1] * 25))
    for seconds in (0.001, 0.004, 0.02, 0.3):
        metrics.observe_request(code=200, seconds=seconds)
    metrics.observe_request(code=500, seconds=0.002)
    return metrics


def test_parse_matches_prometheus_client_on_predictor_output() -> None:
    text = _predictor_metrics().render().decode()
    # prometheus_client appends _total to counters named without it; compare names without the suffix.
    ours = sorted((s.name.removesuffix("_total"), tuple(sorted(s.labels.items())), s.value)
                  for s in parse_prometheus(text))
    reference = sorted(
        (s.name.removesuffix("_total"), tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text) for s in family.samples)
    assert ours == reference
    assert any(s.labels.get("model") == 'm"odel' for s in parse_prometheus(text))


def _prom_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """An independent transcription of Prometheus' bucketQuantile for the finite, monotonic case."""
    total = buckets[-1][1]
    rank = q * total
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(le):
                return buckets[-2][0]
            start, below = (0.0, 0.0) if i == 0 else (buckets[i - 1][0], buckets[i - 1][1])
            return start + (le - start) * (rank - below) / (count - below)
    raise AssertionError


@pytest.mark.parametrize("q", [0.0, 0.25, 0.5, 0.9, 0.95, 0.99])
def test_histogram_quantile_interpolates_like_prometheus(q: float) -> None:
    buckets = [(0.005, 10.0), (0.01, 40.0), (0.05, 90.0), (0.1, 99.0), (math.inf, 100.0)]
    assert histogram_quantile(q, buckets) == pytest.approx(_prom_quantile(q, buckets))


def test_histogram_quantile_edges() -> None:
    # Everything above the largest finite bound: the answer is that bound, not infinity.
    assert histogram_quantile(0.95, [(0.1, 0.0), (math.inf, 5.0)]) == 0.1
    # No observations, or no +Inf bucket: no data, which must not read as zero latency.
    assert histogram_quantile(0.95, [(0.1, 0.0), (math.inf, 0.0)]) is None
    assert histogram_quantile(0.95, [(0.1, 3.0), (0.2, 5.0)]) is None
    assert histogram_quantile(0.95, []) is None
    # Unsorted input and a non-monotonic count (scrape skew) are tolerated.
    assert histogram_quantile(0.5, [(math.inf, 10.0), (0.2, 9.0), (0.1, 10.0)]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, [(0.1, 1.0), (math.inf, 1.0)])


def test_histogram_buckets_sums_over_other_labels() -> None:
    samples = parse_prometheus(
        'h_bucket{v="1",le="0.1"} 2\nh_bucket{v="1",le="+Inf"} 3\n'
        'h_bucket{v="2",le="0.1"} 1\nh_bucket{v="2",le="+Inf"} 4\nh_count 7\nother_bucket{le="1"} 9\n')
    assert histogram_buckets(samples, "h") == [(0.1, 3.0), (math.inf, 7.0)]


def _pod(*, ready: bool = True, ip: str | None = "10.244.0.7", deleting: bool = False) -> dict[str, Any]:
    meta = {"name": "p", "uid": "u1", "labels": {"loopwright.dev/version": "4"},
            **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": {**({"podIP": ip} if ip else {}), "conditions": conditions}}


def test_pod_target_only_for_ready_pods_with_an_ip() -> None:
    assert pod_target(_pod(), version_label="loopwright.dev/version") == PodTarget(
        name="p", uid="u1", ip="10.244.0.7", version="4")
    assert pod_target(_pod(ready=False), version_label="loopwright.dev/version") is None
    assert pod_target(_pod(ip=None), version_label="loopwright.dev/version") is None
    assert pod_target(_pod(deleting=True), version_label="loopwright.dev/version") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fetch_reports_unreachable_and_broken_pods_without_raising() -> None:
    async def scenario() -> dict[str, Any]:
        async def metrics(request: web.Request) -> web.Response:
            if request.host.startswith("127.0.0.2"):
                return web.Response(status=503)
            if request.host.startswith("127.0.0.3"):
                return web.Response(text="broken{ 1\n")
            if request.host.startswith("127.0.0.4"):
                await asyncio.sleep(5)
            return web.Response(text='loopwright_predictor_requests_total{code="200"} 7\n')

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "0.0.0.0", port).start()  # 127.0.0.0/8 is all loopback
        closed = _free_port()
        try:
            pods = [PodTarget(name=f"p{i}", uid=f"u{i}", ip=f"127.0.0.{i}", version="1") for i in range(1, 5)]
            result = await fetch_pod_metrics(pods=pods, port=port, timeout=1.0)
            lone = [PodTarget(name="c", uid="c", ip="127.0.0.1", version="1")]
            result["closed"] = (await fetch_pod_metrics(pods=lone, port=closed, timeout=1.0))["c"]
            return result
        finally:
            await runner.cleanup()

    result = asyncio.run(scenario())
    assert result["u1"].ok
    assert result["u1"].total("loopwright_predictor_requests_total", code="200") == 7
    assert result["u1"].total("loopwright_predictor_requests_total", code="500") == 0
    assert result["u2"].error == "HTTP 503"
    assert str(result["u3"].error).startswith("unparsable")
    assert "Timeout" in str(result["u4"].error)
    assert result["closed"].error
    assert not result["closed"].samples
    assert asyncio.run(fetch_pod_metrics(pods=[], port=1, timeout=1.0)) == {}
