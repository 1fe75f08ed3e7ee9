"""netfabric.services: what a service is on the wire, as pure values and functions.

- :mod:`lb`: :class:`LoadBalancer` (one service port as one netns carries it);
- :mod:`nftplan`: the kube-proxy-style nftables ruleset and the smallest delta between two.

The kernel adapter is :mod:`netfabric.dataplane.services`.
"""

from netfabric.services.lb import LoadBalancer, Proto, Target
from netfabric.services.nftplan import Delta, index, render_delta, render_full

__all__ = ["Delta", "LoadBalancer", "Proto", "Target", "index", "render_delta", "render_full"]
