"""netfabric.ipam."""
