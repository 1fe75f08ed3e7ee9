"""netfabric.gossip."""
