"""The agent's metrics (pure): an Observation through the collector and prometheus_client's
exposition, parsed back with prometheus_client's own parser; the DNS latency histogram."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from netfabric.agent.metrics import (
    AgentCollector,
    NetworkUsage,
    Observation,
    dns_results,
    render,
)
from netfabric.api.types import GossipInfo
from netfabric.dns.latency import BUCKETS, Latency


def _samples(obs: Observation) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = render(AgentCollector(lambda: obs)).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_an_observation_becomes_metrics() -> None:
    lat = Latency()
    lat.observe(0.00003, 5)   # five cache hits in one batch
    lat.observe(0.004)
    obs = Observation(
        gossip=GossipInfo(members={"alive": 2, "suspect": 1, "dead": 0, "left": 0}, health=1,
                          tables={"endpoints": 4}, networks=1,
                          counters={"datagrams_in": 10, "datagrams_out": 12, "bytes_in": 900,
                                    "auth_failed": 3, "decode_failed": 2}),
        dns_results=dns_results({"hits": 1, "answered": 4, "nxdomain": 1, "formerr": 2},
                                {"hits": 5}),
        dns_latency=lat.snapshot(),
        networks=(NetworkUsage("ov", addresses_used=3, addresses_total=256, endpoints_local=1,
                               endpoints_remote=2),),
        reconcile_runs={"kernel": 1, "peers": 7}, reconcile_repairs=4,
        services={"web": 2, "db": 0})
    s = _samples(obs)
    assert s[("netfabric_gossip_members", (("state", "suspect"),))] == 1
    assert s[("netfabric_gossip_health_score", ())] == 1
    assert s[("netfabric_gossip_messages_total", (("direction", "out"),))] == 12
    assert s[("netfabric_gossip_bytes_total", (("direction", "in"),))] == 900
    assert s[("netfabric_gossip_unauthenticated_total", ())] == 3
    assert s[("netfabric_gossip_dropped_total", (("reason", "decode_failed"),))] == 2
    assert s[("netfabric_gossip_table_entries", (("table", "endpoints"),))] == 4
    assert s[("netfabric_dns_queries_total", (("result", "cached"),))] == 6
    assert s[("netfabric_dns_queries_total", (("result", "answered"),))] == 3
    assert s[("netfabric_dns_queries_total", (("result", "nxdomain"),))] == 1
    assert s[("netfabric_dns_queries_total", (("result", "error"),))] == 2
    assert s[("netfabric_dns_answer_seconds_count", ())] == 6
    assert s[("netfabric_dns_answer_seconds_bucket", (("le", "5e-05"),))] == 5
    assert s[("netfabric_dns_answer_seconds_bucket", (("le", "0.005"),))] == 6
    assert s[("netfabric_ipam_addresses_used", (("network", "ov"),))] == 3
    assert s[("netfabric_endpoints", (("location", "remote"), ("network", "ov")))] == 2
    assert s[("netfabric_reconcile_runs_total", (("kind", "peers"),))] == 7
    assert s[("netfabric_reconcile_repairs_total", ())] == 4
    assert s[("netfabric_services", ())] == 2
    assert s[("netfabric_service_backends", (("service", "web"),))] == 2


def test_no_cluster_no_dns_still_exposes_zeroes() -> None:
    s = _samples(Observation())
    assert s[("netfabric_gossip_unauthenticated_total", ())] == 0
    assert s[("netfabric_services", ())] == 0
    assert not any(name.startswith("netfabric_dns_answer") for name, _ in s)


def test_latency_buckets_and_merge() -> None:
    a, b = Latency(), Latency()
    a.observe(BUCKETS[0])        # on a bound: counted in that bucket (le)
    b.observe(100.0, 2)          # above every bound
    b.observe(0.0, 0)            # nothing
    merged = Latency.merged([a.snapshot(), b.snapshot()])
    assert merged.count == 3 and merged.total == BUCKETS[0] + 200.0
    cum = merged.cumulative()
    assert cum[0] == (BUCKETS[0], 1) and cum[-1] == (float("inf"), 3)
