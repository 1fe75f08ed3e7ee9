"""What netfabric does to the host it runs on, outside the agent: ``netfabric docker setup``
and ``netfabric reset``."""
