// Dockyard web console: one page fed by a server-sent event stream (/ui/api/live) of
// snapshots; actions POST JSON with the session's CSRF token. No framework, no CDN.
"use strict";
(function () {
  const meta = (n) => document.querySelector(`meta[name="${n}"]`).content;
  const CSRF = meta("dockyard-csrf");
  const MAY_ACT = meta("dockyard-may-act") === "true";
  const $ = (sel) => document.querySelector(sel);
  let cluster = new URLSearchParams(location.search).get("cluster") || "";
  let stream = null;
  let logsTask = null;
  let usageService = null;
  let painted = false;

  // h("td", {class: "x"}, "text", child...): elements built from data, never innerHTML
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }
  const when = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "");
  const bar = (used, total) =>
    h("span", {}, h("span", { class: "bar" }, h("i", { "data-w": pct(used, total) })),
      `${used} / ${total}`);
  const pct = (a, b) => (b ? Math.round((100 * a) / b) : 0);

  function notice(text) {
    const n = $("#notice");
    n.textContent = text;
    n.hidden = !text;
  }

  // Keyed rows: a row's cells are redrawn, its action cell (inputs) is kept while it lives.
  function rows(table, items, key, cells, actions) {
    const body = $(`${table} tbody`);
    const old = new Map([...body.children].map((tr) => [tr.dataset.key, tr]));
    let prev = null;
    for (const item of items) {
      const k = key(item);
      let tr = old.get(k);
      old.delete(k);
      if (!tr) {
        tr = h("tr", { "data-key": k });
        if (actions) tr.actionCell = h("td", { class: "actions" }, actions(item));
      }
      tr.item = item;
      tr.replaceChildren(...cells(item).map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))));
      if (tr.actionCell) tr.append(tr.actionCell);
      const want = prev ? prev.nextSibling : body.firstChild;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
    for (const i of body.querySelectorAll(".bar i")) i.style.width = i.dataset.w + "%";
  }

  async function post(action, body) {
    const r = await fetch(`/ui/api/${action}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
    const out = await r.json().catch(() => ({}));
    if (!r.ok) notice(`${out.error || r.status}: ${out.message || "refused"}`);
    else if (out.failures && out.failures.length) notice(`failed: ${JSON.stringify(out.failures)}`);
    else notice("");
    return r.ok;
  }

  function render(s) {
    cluster = s.cluster;
    const sel = $("#cluster");
    sel.replaceChildren(...s.clusters.map((c) => h("option", { value: c.name, selected: c.name === cluster ? "" : null }, c.name)));
    rows("#clusters", s.clusters, (c) => c.name, (c) => [c.name, c.status, c.instances, c.services, c.running, c.pending]);
    rows("#instances", s.instances, (i) => i.arn, (i) => [
      h("td", { class: "host" }, i.host, h("small", {}, i.id)),
      i.zone,
      h("td", { class: "status" }, i.status),
      h("td", { class: i.connected ? "good" : "bad" }, i.connected ? "connected" : "disconnected"),
      bar(i.cpu.used, i.cpu.total),
      bar(i.memory.used, i.memory.total),
      `${i.running} running, ${i.pending} pending`,
      h("td", {}, Object.entries(i.attributes).map(([k, v]) => h("small", {}, v ? `${k}=${v}` : k))),
    ], MAY_ACT && ((i) => h("button", { class: "drain", type: "button", onclick: (e) => {
      const item = e.target.closest("tr").item;
      post("instance-state", { cluster, instance: item.arn, status: item.status === "DRAINING" ? "ACTIVE" : "DRAINING" });
    } }, "Drain")));
    for (const tr of $("#instances tbody").children) {
      const button = tr.querySelector("button.drain");
      if (button) button.textContent = tr.item.status === "DRAINING" ? "Activate" : "Drain";
    }
    rows("#services", s.services, (v) => v.name, (v) => [
      h("td", { class: "name" }, v.name),
      v.taskDefinition,
      h("td", { class: "desired" }, v.desired),
      h("td", { class: "running" }, v.running),
      h("td", { class: "pending" }, v.pending),
      h("td", {}, v.deployments.map((d) => h("small", {}, `${d.status} ${d.taskDefinition}: ${d.running}/${d.desired} running, ${d.rollout}${d.failed ? `, ${d.failed} failed` : ""}`))),
      h("td", {}, v.events.slice(0, 3).map((e) => h("small", {}, `${when(e.at)} ${e.message}`))),
    ], (v) => [
      MAY_ACT ? h("input", { class: "count", type: "number", min: "0", value: v.desired, "aria-label": "desired count" }) : null,
      MAY_ACT ? h("button", { class: "scale", type: "button", onclick: (e) => {
        const tr = e.target.closest("tr");
        post("scale", { cluster, service: tr.item.name, desiredCount: Number(tr.querySelector("input.count").value) });
      } }, "Scale") : null,
      h("button", { class: "usage", type: "button", onclick: (e) => showUsage(e.target.closest("tr").item.name) }, "Usage"),
    ]);
    for (const tr of $("#services tbody").children) {
      const input = tr.querySelector("input.count");
      if (input && document.activeElement !== input && tr.dataset.desired !== String(tr.item.desired)) {
        input.value = tr.item.desired;
        tr.dataset.desired = tr.item.desired;
      }
    }
    rows("#tasks", s.tasks, (t) => t.arn, (t) => [
      h("td", { class: "id" }, t.id.slice(0, 12)),
      t.service ? `${t.service} (${t.taskDefinition})` : t.taskDefinition,
      h("td", { class: "status" }, t.lastStatus, h("small", {}, `desired ${t.desiredStatus}`)),
      t.health,
      t.host,
      t.ports.join(", "),
      when(t.startedAt),
      [t.stopCode, t.stoppedReason].filter(Boolean).join(": "),
    ], (t) => [
      h("button", { class: "logs", type: "button", onclick: (e) => openLogs(e.target.closest("tr").item) }, "Logs"),
      MAY_ACT ? h("button", { class: "stop", type: "button", onclick: (e) => {
        const item = e.target.closest("tr").item;
        if (item.desiredStatus !== "STOPPED") post("stop-task", { cluster, task: item.arn });
      } }, "Stop") : null,
    ]);
    const shown = s.tasks.filter((t) => t.desiredStatus !== "STOPPED").length;
    $("#tasks-note").textContent = shown < s.liveTasks ? `(the newest ${shown} of ${s.liveTasks} live tasks)` : "";
    $("#events").replaceChildren(...s.events.map((e) => h("li", {}, `${when(e.at)} ${e.kind} ${e.subject}: ${e.message}`)));
    if (!painted) {
      painted = true;
      performance.mark("dockyard:first-data");
    }
  }

  function connect() {
    if (stream) stream.close();
    stream = new EventSource(`/ui/api/live?cluster=${encodeURIComponent(cluster)}`);
    const live = $("#live");
    stream.addEventListener("snapshot", (e) => {
      live.textContent = "live";
      live.className = "live";
      render(JSON.parse(e.data));
    });
    stream.addEventListener("problem", (e) => {
      const p = JSON.parse(e.data);
      notice(`${p.error}: ${p.message}`);
    });
    stream.addEventListener("signedout", () => location.assign("/ui/signin"));
    stream.onerror = () => {
      live.textContent = "reconnecting…";
      live.className = "live off";
    };
  }

  async function openLogs(task) {
    logsTask = task;
    $("#logs-section").hidden = false;
    $("#logs-task").textContent = task.id;
    $("#logs").textContent = "loading…";
    const q = new URLSearchParams({ cluster, task: task.arn, tail: "200" });
    const r = await fetch(`/ui/api/logs?${q}`, { credentials: "same-origin" });
    const out = await r.json().catch(() => ({}));
    if (logsTask !== task) return;
    $("#logs").textContent = r.ok
      ? out.lines.map((l) => (task.containers.length > 1 ? `${l.container} | ` : "") + l.text).join("\n") || "(no output)"
      : `${out.error || r.status}: ${out.message || ""}`;
  }

  // Per-service CPU/memory (% of reservation) over the last hour, from the agents' usage
  // reports (controller/usage.py): empty until the service's tasks have reported.
  async function showUsage(service) {
    usageService = service;
    $("#usage-section").hidden = false;
    $("#usage-service").textContent = service;
    const q = new URLSearchParams({ cluster, service });
    const r = await fetch(`/ui/api/usage?${q}`, { credentials: "same-origin" });
    const u = await r.json().catch(() => ({ cpu: [], memory: [] }));
    if (usageService !== service) return;
    drawUsage(u);
  }

  function drawUsage(u) {
    const c = $("#usage");
    const g = c.getContext("2d");
    const W = c.width, H = c.height, now = Date.now() / 1000;
    g.clearRect(0, 0, W, H);
    g.strokeStyle = "#c4c9d0";
    g.strokeRect(30.5, 5.5, W - 36, H - 25);
    g.fillStyle = "#5b6472";
    g.font = "11px sans-serif";
    g.fillText("100%", 0, 12);
    g.fillText("0", 18, H - 20);
    g.fillText("-60 min", 30, H - 5);
    g.fillText("now", W - 28, H - 5);
    const x = (t) => 30 + ((t - (now - 3600)) / 3600) * (W - 36);
    const y = (v) => 5 + (1 - Math.min(v, 100) / 100) * (H - 25);
    for (const [name, color] of [["cpu", "#3b6fd8"], ["memory", "#d8743b"]]) {
      const pts = u[name] || [];
      g.strokeStyle = color;
      g.beginPath();
      pts.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.stroke();
    }
    $("#usage-note").textContent = u.available
      ? "blue: CPU, orange: memory (percent of the tasks' reservation)"
      : "No usage data yet: per-task CPU and memory sampling is not in this controller.";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#cluster").addEventListener("change", (e) => {
      cluster = e.target.value;
      history.replaceState(null, "", `?cluster=${encodeURIComponent(cluster)}`);
      connect();
    });
    $("#signout").addEventListener("click", async () => {
      await fetch("/ui/signout", { method: "POST", headers: { "X-CSRF-Token": CSRF }, credentials: "same-origin" });
      location.assign("/ui/signin");
    });
    $("#logs-refresh").addEventListener("click", () => logsTask && openLogs(logsTask));
    $("#logs-close").addEventListener("click", () => { logsTask = null; $("#logs-section").hidden = true; });
    connect();
  });
})();
