"""The live topology page (`netfabric agent --ui-addr`): one HTML document with its script
inline (no build step, no CDN), fed by ``/api/topology`` and updated by server-sent events
on ``/events`` whenever the agent's view changes."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>netfabric</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{padding:10px 16px;background:#1f2937;color:#fff;display:flex;gap:16px;align-items:center}
header b{font-size:16px} #status{margin-left:auto;font-size:12px;opacity:.8}
main{padding:12px 16px} svg{background:#fff;border:1px solid #ddd;border-radius:6px}
.host rect{fill:#eef2ff;stroke:#6366f1} .host.dead rect{fill:#fee2e2;stroke:#dc2626}
.host.suspect rect{fill:#fef9c3;stroke:#ca8a04}
text{font-size:12px} .hostname{font-weight:600;font-size:13px}
table{border-collapse:collapse;margin-top:12px;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
</style></head>
<body><header><b>netfabric</b><span id="me"></span><span id="status">connecting</span></header>
<main><svg id="graph" width="1000" height="420"></svg>
<h3>Names</h3><table id="names"><thead>
<tr><th>name</th><th>address</th><th>network</th><th>host</th></tr>
</thead><tbody></tbody></table>
</main>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb","#16a34a","#db2777","#ea580c","#7c3aed","#0891b2","#65a30d","#b91c1c"];
function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function render(t) {
  document.getElementById("me").textContent =
    t.node.hostname + " (" + t.node.address + ") health " + t.node.health;
  const svg = document.getElementById("graph");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const hosts = t.hosts, nets = t.networks;
  const color = {}; nets.forEach((n, i) => color[n.id] = COLORS[i % COLORS.length]);
  const width = Math.max(1000, hosts.length * 240 + 40);
  svg.setAttribute("width", width);
  const busY = {}; nets.forEach((n, i) => busY[n.id] = 330 + i * 18);
  svg.setAttribute("height", 360 + nets.length * 18);
  nets.forEach(n => {
    const g = el("g", {"class": "network", "data-network": n.name});
    g.appendChild(el("line", {x1: 20, x2: width - 20, y1: busY[n.id], y2: busY[n.id],
                              stroke: color[n.id], "stroke-width": 3}));
    g.appendChild(el("text", {x: 24, y: busY[n.id] - 4, fill: color[n.id]},
                     n.name + " (" + n.driver + ")"));
    svg.appendChild(g);
  });
  hosts.forEach((h, i) => {
    const x = 20 + i * 240;
    const g = el("g", {"class": "host " + h.state, "data-host": h.address,
                       "data-state": h.state});
    g.appendChild(el("rect", {x: x, y: 20, width: 220, height: 280, rx: 8}));
    g.appendChild(el("text", {x: x + 10, y: 40, "class": "hostname"},
                     (h.hostname || h.id.slice(0, 12)) + "  " + h.address));
    g.appendChild(el("text", {x: x + 10, y: 56}, h.state));
    const eps = t.endpoints.filter(e => e.host === h.id);
    eps.forEach((e, j) => {
      const y = 80 + j * 26;
      const c = color[e.network_id] || "#555";
      const eg = el("g", {"class": "endpoint", "data-endpoint": e.name, "data-ip": e.ip,
                          "data-network": e.network});
      eg.appendChild(el("line", {x1: x + 22, y1: y, x2: x + 22, y2: busY[e.network_id] || y,
                                 stroke: c, "stroke-dasharray": "3 3"}));
      eg.appendChild(el("circle", {cx: x + 22, cy: y, r: 8, fill: c}));
      eg.appendChild(el("text", {x: x + 36, y: y + 4}, e.name + "  " + e.ip));
      g.appendChild(eg);
    });
    svg.appendChild(g);
  });
  const body = document.querySelector("#names tbody");
  body.textContent = "";
  t.names.forEach(n => {
    const tr = document.createElement("tr");
    tr.setAttribute("data-name", n.name);
    [n.name, n.ip, n.network, n.host].forEach(v => {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  document.body.setAttribute("data-version", String(t.version));
}
fetch("/api/topology").then(r => r.json()).then(render);
const events = new EventSource("/events");
events.addEventListener("topology", ev => {
  document.getElementById("status").textContent = "live";
  render(JSON.parse(ev.data));
});
events.onerror = () => { document.getElementById("status").textContent = "reconnecting"; };
</script></body></html>
"""
