"""netfabric.dataplane: the only package that talks to the kernel (pyroute2, nft).

- :mod:`resources`: kernel objects as values; :mod:`reconcile`: the pure ``diff``;
- :mod:`kernel`: ``Kernel`` with idempotent verbs, ``apply`` and ``observe``, on a worker
  thread; :mod:`rawnl`: the raw rtnetlink hot path; :mod:`nft`: helpers (named netns:
  :mod:`netfabric.netns`).
"""

from netfabric.dataplane.kernel import Kernel, Scope
from netfabric.dataplane.reconcile import diff

__all__ = ["Kernel", "Scope", "diff"]
