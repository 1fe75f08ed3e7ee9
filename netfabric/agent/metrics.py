"""The agent's Prometheus metrics: an :class:`Observation` (plain values the agent reads at
scrape time) and :class:`AgentCollector`, the prometheus_client collector that turns the
latest observation into metric families. The exposition is prometheus_client's own
(:func:`render`); nothing here does I/O.

Metric names (all ``netfabric_``)::

  gossip_members{state}                 members by state, this node counted alive
  gossip_health_score                   Lifeguard local health (0 is healthy)
  gossip_messages_total{direction}      UDP datagrams in/out
  gossip_bytes_total{direction}         UDP bytes in/out
  gossip_streams_total{direction}       TCP push/pull streams in/out
  gossip_dropped_total{reason}          undecodable, failed streams, rejected entries
  gossip_unauthenticated_total          packets that failed the keyring
  gossip_table_entries{table}           live entries per table
  dns_queries_total{result}             cached, answered, nxdomain, forwarded, truncated,
                                        error, dropped
  dns_answer_seconds                    histogram: arrival to answer
  ipam_addresses_used{network}          addresses this node's IPAM holds in the network
  ipam_addresses_total{network}         addresses of its subnets
  endpoints{network,location}           endpoints per network, local and remote
  reconcile_runs_total{kind}            kernel reconciles, peer (FDB/neighbour) syncs
  reconcile_repairs_total               kernel ops the reconciles ran
  services                              services the cluster defines
  service_backends{service}             backends per service
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from netfabric.api.types import GossipInfo
from netfabric.dns.latency import LatencySnapshot

__all__ = ["CONTENT_TYPE", "AgentCollector", "NetworkUsage", "Observation", "dns_results",
           "render"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_DROP_REASONS = ("decode_failed", "stream_failed", "entries_rejected", "entries_unscoped")


@dataclass(frozen=True, slots=True)
class NetworkUsage:
    """One network as this node sees it."""

    name: str
    addresses_used: int
    addresses_total: int
    endpoints_local: int
    endpoints_remote: int


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the metrics show, read from the agent at one moment."""

    gossip: GossipInfo | None = None
    dns_results: dict[str, int] = field(default_factory=dict)
    dns_latency: LatencySnapshot | None = None
    networks: tuple[NetworkUsage, ...] = ()
    reconcile_runs: dict[str, int] = field(default_factory=dict)
    reconcile_repairs: int = 0
    services: dict[str, int] = field(default_factory=dict)
    """Service name -> its backends."""


def dns_results(resolver: dict[str, int], pump: dict[str, int]) -> dict[str, int]:
    """Queries by result from the resolver's and the fast path's counters (the resolver's
    ``answered`` includes its NXDOMAIN answers)."""
    return {
        "cached": resolver.get("hits", 0) + pump.get("hits", 0),
        "answered": resolver.get("answered", 0) - resolver.get("nxdomain", 0),
        "nxdomain": resolver.get("nxdomain", 0),
        "forwarded": resolver.get("forwarded", 0),
        "truncated": resolver.get("truncated", 0),
        "error": (resolver.get("formerr", 0) + resolver.get("notimp", 0)
                  + resolver.get("badvers", 0)),
        "dropped": resolver.get("dropped_short", 0) + resolver.get("dropped_response", 0),
    }


class AgentCollector(Collector):
    """Reads ``source()`` at each collection and yields the families above."""

    def __init__(self, source: Callable[[], Observation]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        obs = self._source()
        yield from _gossip(obs.gossip)
        yield from _dns(obs)
        used = GaugeMetricFamily("netfabric_ipam_addresses_used",
                                 "Addresses this node's IPAM holds in the network",
                                 labels=["network"])
        total = GaugeMetricFamily("netfabric_ipam_addresses_total",
                                  "Addresses of the network's subnets", labels=["network"])
        eps = GaugeMetricFamily("netfabric_endpoints", "Endpoints per network",
                                labels=["network", "location"])
        for net in obs.networks:
            used.add_metric([net.name], net.addresses_used)
            total.add_metric([net.name], net.addresses_total)
            eps.add_metric([net.name, "local"], net.endpoints_local)
            eps.add_metric([net.name, "remote"], net.endpoints_remote)
        yield from (used, total, eps)
        runs = CounterMetricFamily("netfabric_reconcile_runs", "Reconcile runs by kind",
                                   labels=["kind"])
        for kind, n in sorted(obs.reconcile_runs.items()):
            runs.add_metric([kind], n)
        yield runs
        yield CounterMetricFamily("netfabric_reconcile_repairs",
                                  "Kernel operations the reconciles ran",
                                  value=obs.reconcile_repairs)
        yield GaugeMetricFamily("netfabric_services", "Services the cluster defines",
                                value=len(obs.services))
        backends = GaugeMetricFamily("netfabric_service_backends", "Backends per service",
                                     labels=["service"])
        for name, n in sorted(obs.services.items()):
            backends.add_metric([name], n)
        yield backends


def _gossip(g: GossipInfo | None) -> Iterator[Metric]:
    members = GaugeMetricFamily("netfabric_gossip_members", "Gossip members by state",
                                labels=["state"])
    tables = GaugeMetricFamily("netfabric_gossip_table_entries",
                               "Live gossip entries per table", labels=["table"])
    msgs = CounterMetricFamily("netfabric_gossip_messages", "Gossip UDP datagrams",
                               labels=["direction"])
    octets = CounterMetricFamily("netfabric_gossip_bytes", "Gossip UDP bytes",
                                 labels=["direction"])
    streams = CounterMetricFamily("netfabric_gossip_streams", "Gossip TCP push/pull streams",
                                  labels=["direction"])
    dropped = CounterMetricFamily("netfabric_gossip_dropped",
                                  "Gossip packets, streams and entries thrown away",
                                  labels=["reason"])
    c = g.counters if g is not None else {}
    if g is not None:
        for state, n in g.members.items():
            members.add_metric([state], n)
        for table, n in sorted(g.tables.items()):
            tables.add_metric([table], n)
    for d in ("in", "out"):
        msgs.add_metric([d], c.get(f"datagrams_{d}", 0))
        octets.add_metric([d], c.get(f"bytes_{d}", 0))
        streams.add_metric([d], c.get(f"streams_{d}", 0))
    for reason in _DROP_REASONS:
        dropped.add_metric([reason], c.get(reason, 0))
    yield members
    yield GaugeMetricFamily("netfabric_gossip_health_score",
                            "Lifeguard local health score (0 is healthy)",
                            value=g.health if g is not None else 0)
    yield from (msgs, octets, streams, dropped, tables)
    yield CounterMetricFamily("netfabric_gossip_unauthenticated",
                              "Gossip packets that failed authentication",
                              value=c.get("auth_failed", 0))


def _dns(obs: Observation) -> Iterator[Metric]:
    queries = CounterMetricFamily("netfabric_dns_queries", "Embedded DNS queries by result",
                                  labels=["result"])
    for result, n in obs.dns_results.items():
        queries.add_metric([result], n)
    yield queries
    lat = obs.dns_latency
    if lat is not None:
        hist = HistogramMetricFamily("netfabric_dns_answer_seconds",
                                     "Seconds from a DNS query's arrival to its answer")
        hist.add_metric([], [(_bound(b), n) for b, n in lat.cumulative()], sum_value=lat.total)
        yield hist


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


def render(collector: AgentCollector) -> bytes:
    """The Prometheus text exposition of one collection."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
