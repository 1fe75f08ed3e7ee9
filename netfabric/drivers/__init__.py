"""netfabric.drivers: bridge and overlay networks as desired kernel state."""

from netfabric.drivers.bridge import BridgeDriver
from netfabric.drivers.common import Attachment
from netfabric.drivers.overlay import OverlayDriver

__all__ = ["Attachment", "BridgeDriver", "OverlayDriver"]
