"""CNI: ``netfabric-cni``, the plugin a CNI runtime (podman, Nomad, CRI) executes.

- :mod:`.spec` is the pure core: the runtime's environment and stdin in, a request for the
  agent out; the agent's answer in, the result (0.3.x/0.4.0, 1.0.0, 1.1.0 format) or the
  spec's error object out.
- :mod:`.main` is the thin executable: it reads env and stdin, answers VERSION itself (no
  agent, no heavy import: podman calls it for every plugin on every command) and sends the
  other verbs to the local agent's API socket as ``POST /v1/cni``.
- :mod:`.service` runs in the agent: it serves the ``cni`` verb through the agent's front-end
  interface (:class:`~netfabric.agent.frontend.AgentFrontend`), as the Docker plugin does,
  and keeps its attachments in the agent's data dir.

This package imports nothing at import time, so that the executable starts fast.
"""
