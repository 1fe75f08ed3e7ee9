"""Gossip tuning: one dataclass, three named profiles (memberlist's vocabulary).

Every timing is in seconds of the clock the caller passes as ``now``. Formulas that scale
with the cluster size ``N`` (the live members this node knows, itself included) are
written in each field's docstring and implemented in :mod:`netfabric.gossip.config` helpers
below, so the simulator, the runtime and the tests all agree on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from netfabric.errors import InvalidArgument

__all__ = ["GossipConfig", "push_pull_scale", "retransmit_limit", "suspicion_timeouts"]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Timers, fan-outs and limits of one gossip node.

    Use :meth:`lan`, :meth:`local` or :meth:`wan` and override with :meth:`with_`.
    """

    probe_interval: float = 0.5
    """s. One failure-detector probe starts every ``probe_interval * (health + 1)``;
    ``health`` is the Lifeguard local-health score (0 when healthy)."""

    probe_timeout: float = 0.2
    """s. A direct ping not acked within ``probe_timeout * (health + 1)`` triggers the
    indirect probes; should exceed the 99th percentile round-trip time."""

    indirect_checks: int = 3
    """count. Members asked to ping a target on our behalf when the direct ping fails."""

    suspicion_mult: float = 1.5
    """factor. Minimum suspicion timeout =
    ``suspicion_mult * max(1, log10(N)) * probe_interval`` (memberlist's formula)."""

    suspicion_max_timeout_mult: float = 10.0
    """factor. Maximum suspicion timeout = ``suspicion_max_timeout_mult * minimum``. A lone
    suspicion waits the maximum; each independent confirmation shrinks it (Lifeguard):
    ``max - (max - min) * log(c + 1) / log(K + 1)`` for ``c`` of ``K`` confirmations."""

    suspicion_confirmations: int = 3
    """count K. Independent suspicions that bring the timeout down to its minimum
    (0 when N - 2 < K, as in memberlist)."""

    awareness_max_multiplier: int = 8
    """factor. Cap of the local-health multiplier ``health + 1`` (Lifeguard)."""

    gossip_interval: float = 0.1
    """s. Every ``gossip_interval`` pending broadcasts go to ``gossip_nodes`` random peers
    (and to ``gossip_nodes`` random members of each network with pending table events)."""

    gossip_nodes: int = 3
    """count. Fan-out of each gossip round."""

    retransmit_mult: int = 4
    """factor. Each broadcast is sent at most ``retransmit_mult * ceil(log10(N + 1))`` times
    (N = members of the cluster, or of the network for table events)."""

    push_pull_interval: float = 30.0
    """s. Full-state anti-entropy with one random member every
    ``push_pull_interval * push_pull_scale(N)``; scale = 1 up to 32 nodes, then
    ``ceil(log2(N) - log2(32)) + 1`` (memberlist's pushPullScale). 0 disables it."""

    reconnect_interval: float = 10.0
    """s. Every ``reconnect_interval`` a push/pull is tried with one random dead (not left)
    member, so that both sides of a healed partition find each other again."""

    dead_keep_time: float = 600.0
    """s. Dead and left members are remembered (and retried by reconnect) this long, so
    that stale gossip cannot resurrect them; then forgotten."""

    reap_interval: float = 1800.0
    """s. A deletion tombstone or a "left network" record lingers this long before it is
    reaped (networkdb's reapEntryInterval); must exceed the worst dissemination delay."""

    udp_buffer_size: int = 1400
    """bytes. Largest datagram on the wire, seal included; compound messages are packed
    up to it."""

    stream_frame_size: int = 65536
    """bytes. Target size of one sealed push/pull frame (a stream carries many)."""

    max_stream_size: int = 256 * 1024 * 1024
    """bytes. Largest push/pull stream accepted; 10,000 entries need about 1 MiB."""

    nack_ratio: float = 0.8
    """fraction. An indirect-probe relay that gets no ack within
    ``nack_ratio * probe_timeout`` sends a nack, so the asker can tell a dead target
    from its own lossy link (Lifeguard)."""

    @classmethod
    def lan(cls) -> GossipConfig:
        """A LAN or a data-centre: RTT under 10 ms, hundreds to thousands of nodes."""
        return cls()

    @classmethod
    def local(cls) -> GossipConfig:
        """One machine or a lab of network namespaces: RTT under 1 ms, fast timers."""
        return cls(probe_interval=0.3, probe_timeout=0.1, suspicion_mult=1.5,
                   gossip_interval=0.05, push_pull_interval=5.0, reconnect_interval=2.0,
                   dead_keep_time=60.0, reap_interval=60.0)

    @classmethod
    def wan(cls) -> GossipConfig:
        """Across regions: RTT up to 500 ms, lossy links, slower timers."""
        return cls(probe_interval=5.0, probe_timeout=3.0, suspicion_mult=6.0,
                   gossip_interval=0.5, gossip_nodes=4, push_pull_interval=60.0,
                   reconnect_interval=30.0, dead_keep_time=3600.0, reap_interval=3600.0)

    def with_(self, **changes: object) -> GossipConfig:
        """A copy with some fields changed, validated."""
        try:
            cfg = replace(self, **changes)  # type: ignore[arg-type]
        except TypeError as exc:
            raise InvalidArgument(f"unknown gossip setting: {exc}") from exc
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`InvalidArgument` for settings that cannot work."""
        positive = ("probe_interval", "probe_timeout", "gossip_interval", "reap_interval",
                    "reconnect_interval", "dead_keep_time", "suspicion_mult",
                    "suspicion_max_timeout_mult")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InvalidArgument(f"{name} must be positive")
        if self.probe_timeout >= self.probe_interval:
            raise InvalidArgument("probe_timeout must be shorter than probe_interval")
        if self.suspicion_max_timeout_mult < 1:
            raise InvalidArgument("suspicion_max_timeout_mult must be at least 1")
        if self.gossip_nodes < 1 or self.indirect_checks < 0 or self.retransmit_mult < 1:
            raise InvalidArgument("gossip_nodes and retransmit_mult must be >= 1")
        if not 512 <= self.udp_buffer_size <= 65000:
            raise InvalidArgument("udp_buffer_size must be 512..65000 bytes")
        if self.stream_frame_size < 4096 or self.max_stream_size < self.stream_frame_size:
            raise InvalidArgument("stream sizes too small")
        if not 0 < self.nack_ratio < 1:
            raise InvalidArgument("nack_ratio must be between 0 and 1")


def retransmit_limit(mult: int, n: int) -> int:
    """How many times one broadcast is sent: ``mult * ceil(log10(n + 1))``."""
    return mult * max(1, math.ceil(math.log10(n + 1)))


def suspicion_timeouts(cfg: GossipConfig, n: int) -> tuple[float, float]:
    """(minimum, maximum) suspicion timeout in seconds for a cluster of ``n``."""
    low = cfg.suspicion_mult * max(1.0, math.log10(max(n, 1))) * cfg.probe_interval
    return low, low * cfg.suspicion_max_timeout_mult


def push_pull_scale(n: int) -> int:
    """memberlist's pushPullScale: 1 up to 32 nodes, then grows with log2(N)."""
    if n <= 32:
        return 1
    return math.ceil(math.log2(n) - math.log2(32)) + 1
