"""netfabric.drivers."""
