"""`inv traffic` and the URL of an environment: pure parts, with an injected clock and fetcher (no sleeping)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from deploy.errors import DeployError
from deploy.views import traffic as traffic_module
from deploy.views.traffic import Result, Traffic, second_line, service_url, summarize, version_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def environment(tags: dict[str, str] | None, ports: list[int] | None = None) -> SimpleNamespace:
    """TAGS: the load balancer's, on the embedded cloud (None: on AWS, where no tag is read)."""
    balancer = SimpleNamespace(
        tags=lambda: tags or {},
        describe_summary=lambda: {"exists": True, "tags": tags or {}},
        ingress_ports=lambda: ports or [80],
    )
    return SimpleNamespace(
        load_balancer=balancer,
        names=SimpleNamespace(host="dev01.example.com"),
        env="dev01",
        config=SimpleNamespace(local_cloud=tags is not None),
    )


def test_the_url_is_the_hosts_on_aws_and_the_emulators_tag_on_the_embedded_cloud() -> None:
    assert service_url(environment(None)) == "http://dev01.example.com/"
    assert service_url(environment(None, [80, 443])) == "https://dev01.example.com/"
    assert service_url(environment({"LocalCloudURL": "http://127.0.0.1:4242"})) == "http://127.0.0.1:4242/"
    assert service_url(environment({})) == "http://dev01.example.com/"  # an embedded cloud's without the tag


def test_a_version_is_the_header_else_a_digest_of_the_body() -> None:
    assert version_of({"X-App-Version": "v7"}, b"anything") == "v7"
    assert version_of({}, b"a") == version_of({}, b"a") != version_of({}, b"b")
    assert version_of({}, b"a").startswith("body ")


def test_requests_go_at_the_rate_for_the_seconds_and_are_reported_each_second() -> None:
    clock = FakeClock()
    answers = iter([(200, "v1", None)] * 5 + [(503, "x", "HTTP 503")] + [(200, "v2", None)] * 4)
    traffic = Traffic("http://x/", seconds=2, rate=5, clock=clock, sleep=clock.sleep, fetcher=lambda url: next(answers))
    lines: list[str] = []
    results = traffic.run(lambda second, done: lines.append(second_line(second, done)))
    assert len(results) == 10
    assert [round(r.started - 100.0, 1) for r in results] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert lines == [
        "     1s  ok   5  failed   0  versions: v1 ×5",
        "     2s  ok   4  failed   1  versions: v2 ×4  (HTTP 503 ×1)",
    ]
    summary = summarize(results)
    assert (summary["requests"], summary["ok"], summary["failed"]) == (10, 9, 1)
    assert {v: e["requests"] for v, e in summary["versions"].items()} == {"v1": 5, "v2": 4}
    assert summary["errors"] == {"HTTP 503": 1}


def test_a_stop_ends_the_requests_early() -> None:
    clock = FakeClock()
    traffic = Traffic("http://x/", seconds=100, rate=10, clock=clock, sleep=clock.sleep)
    calls = []

    def fetcher(url: str) -> tuple[int, str, None]:
        calls.append(url)
        if len(calls) == 3:
            traffic.stop.set()
        return 200, "v", None

    traffic.fetcher = fetcher
    assert len(traffic.run()) == 3


def test_inv_traffic_fails_when_a_request_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    answers = iter([(200, "v1", None), (None, None, "ConnectionRefusedError: refused")])

    class Fast(Traffic):
        def __init__(self, url: str, seconds: float, rate: float) -> None:
            super().__init__(url, seconds, rate, clock=clock, sleep=clock.sleep, fetcher=lambda url: next(answers))

    monkeypatch.setattr(traffic_module, "Traffic", Fast)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(DeployError, match=r"1 of 2 requests to http://dev01\.example\.com/ failed"):
        traffic_module.run_traffic(environment(None), seconds=1, rate=2, as_json=True, out=out, err=err)
    assert '"failed": 1' in out.getvalue()
    assert "ConnectionRefusedError" in err.getvalue()


def test_a_result_is_ok_only_for_answers_below_400() -> None:
    clock = FakeClock()
    traffic = Traffic("http://x/", clock=clock, sleep=clock.sleep, fetcher=lambda url: (404, "v", "HTTP 404"))
    traffic.one(clock())
    assert traffic.results == [Result(100.0, 100.0, False, 404, None, "HTTP 404")]


def test_inv_traffic_needs_a_load_balancer() -> None:
    missing = environment(None)
    missing.load_balancer.describe_summary = lambda: {"exists": False}
    missing.load_balancer.name = "alb-webapp-dev01"
    with pytest.raises(DeployError, match="alb-webapp-dev01 does not exist: run `inv setup --env dev01`"):
        traffic_module.run_traffic(missing, seconds=1, rate=1, as_json=False, out=io.StringIO())
