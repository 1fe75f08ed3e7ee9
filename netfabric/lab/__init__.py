"""Simulated hosts (network namespaces on one switch) and the `netfabric lab` commands."""

from netfabric.lab.topology import Host, Topology, clean, new_prefix

__all__ = ["Host", "Topology", "clean", "new_prefix"]
