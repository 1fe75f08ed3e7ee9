"""netfabric.services: what a service is on the wire, as pure values and functions.

- :mod:`model`: :class:`Service`, :class:`Backend`, ports (``--publish`` syntax);
- :mod:`lb`: :class:`LoadBalancer` (one service port as one netns carries it);
- :mod:`nftplan`: the kube-proxy-style nftables ruleset and the smallest delta between two;
- :mod:`plan`: services and backends -> one node's load balancers per netns, and DNS;
- :mod:`runtime`: :class:`ServiceFabric`, the I/O shell applying a node's plan.

The kernel adapter is :mod:`netfabric.dataplane.services`.
"""

from netfabric.services.lb import LoadBalancer, Proto, Target
from netfabric.services.model import (
    Backend,
    EndpointMode,
    PortConfig,
    PublishMode,
    Service,
    parse_publish,
)
from netfabric.services.nftplan import Delta, index, render_delta, render_full
from netfabric.services.plan import NodePlan, NodeView, ServiceRecord, plan_node, service_records
from netfabric.services.runtime import ServiceFabric

__all__ = [
    "Backend",
    "Delta",
    "EndpointMode",
    "LoadBalancer",
    "NodePlan",
    "NodeView",
    "PortConfig",
    "Proto",
    "PublishMode",
    "Service",
    "ServiceFabric",
    "ServiceRecord",
    "Target",
    "index",
    "parse_publish",
    "plan_node",
    "render_delta",
    "render_full",
    "service_records",
]
