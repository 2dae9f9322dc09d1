// nats-mcp dashboard: polls the snapshot endpoint and renders it. Everything shown is set as text (textContent or
// DOM text nodes), never parsed as HTML: channel messages and names are untrusted agent input.
"use strict";
(() => {
  const prefix = document.body.dataset.prefix;
  const SVG = "http://www.w3.org/2000/svg";
  let csrf = "";
  let refreshMs = 2000;
  let leaving = false; // set on logout: a poll answered 401 meanwhile must not send the page elsewhere

  const $ = (id) => document.getElementById(id);

  function el(tag, cls, ...children) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function ago(seconds) {
    if (seconds == null) return "";
    if (seconds < 60) return `${Math.round(seconds)}s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)}m ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)}h ago`;
    return `${Math.round(seconds / 86400)}d ago`;
  }

  function clock(iso) {
    const d = new Date(iso);
    return isNaN(d) ? String(iso ?? "") : d.toLocaleTimeString();
  }

  function fill(tbody, rows, columns, empty) {
    tbody.replaceChildren();
    if (!rows.length) {
      const td = el("td", "empty", empty);
      td.colSpan = columns;
      tbody.append(el("tr", "", td));
    }
    for (const row of rows) tbody.append(row);
  }

  function agents(data) {
    const a = data.agents;
    $("agents-count").textContent = a.total > a.shown.length ? `${a.shown.length} of ${a.total}` : `${a.total}`;
    const rows = a.shown.map((g) => {
      // The handle is the agent's name; "via" is the credential (API key, token subject) it came through.
      const via = el("div", "sub via", g.via ? `via ${g.via}` : "via (no call of it in the audit read)");
      const tr = el("tr", "",
        el("td", "", el("strong", "", g.handle), el("div", "sub", `${g.agentType} · ${g.guid.slice(0, 8)}`), via),
        el("td", "", el("span", `badge st-${g.presence}`, g.presence)),
        el("td", "", ...g.capabilities.map((c) => el("span", "chip", c))),
        el("td", "", ago(g.lastSeenAgoS)));
      tr.dataset.guid = g.guid;
      tr.dataset.status = g.presence;
      tr.title = g.presence === "idle"
        ? `idle: no heartbeat or call since ${g.lastSeen} (status ${g.status})`
        : `last heartbeat ${g.lastSeen}`;
      return tr;
    });
    fill($("agents").tBodies[0], rows, 4, "no agents registered");
  }

  function sparkline(trend) {
    const w = 120, h = 28;
    const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
    const max = Math.max(1, ...trend.flatMap((p) => p.slice(1)));
    const series = [["s-pending", 1], ["s-flight", 2], ["s-dlq", 3]];
    for (const [cls, i] of series) {
      const step = trend.length > 1 ? w / (trend.length - 1) : w;
      const points = trend.map((p, j) => `${(j * step).toFixed(1)},${(h - 2 - (p[i] / max) * (h - 4)).toFixed(1)}`);
      if (points.length === 1) points.push(`${w},${points[0].split(",")[1]}`);
      chart.append(svg("polyline", { class: cls, points: points.join(" ") }));
    }
    return chart;
  }

  function queues(data) {
    const rows = data.queues.map((q) => {
      const tr = el("tr", "", el("td", "", el("strong", "", q.capability)),
        el("td", "num", q.pending), el("td", "num", q.inFlight), el("td", "num", q.deadLettered),
        el("td", "", sparkline(q.trend)));
      tr.dataset.capability = q.capability;
      return tr;
    });
    fill($("queues").tBodies[0], rows, 5, "no work queued");
    const items = $("items");
    items.replaceChildren();
    for (const q of data.queues) {
      for (const it of q.items) {
        const li = el("li", "", el("span", `badge st-${it.state}`, it.state), " ", el("strong", "", it.taskId),
          el("span", "sub", ` ${q.capability} · p${it.priority} · attempts ${it.attempts}`));
        li.dataset.item = it.id;
        li.dataset.state = it.state;
        li.title = it.description;
        items.append(li);
      }
    }
  }

  function blocked(data) {
    // Items broadcast with dependsOn, waiting out of the queue until every dependency completes.
    const b = data.blocked;
    $("blocked-count").textContent = b.total > b.shown.length ? `${b.shown.length} of ${b.total}` : `${b.total}`;
    const list = $("blocked");
    list.replaceChildren();
    if (!b.shown.length) list.append(el("li", "empty", "nothing waits for a dependency"));
    for (const it of b.shown) {
      const more = it.dependsOnCount > it.dependsOn.length ? ` +${it.dependsOnCount - it.dependsOn.length}` : "";
      const li = el("li", "", el("span", "badge st-blocked", "blocked"), " ", el("strong", "", it.taskId),
        el("span", "sub", ` ${it.capability} · waits for ${it.dependsOn.map((d) => d.slice(0, 8)).join(", ")}${more}`));
      li.dataset.item = it.id;
      list.append(li);
    }
  }

  function inSeconds(seconds) {
    if (seconds < 60) return `in ${Math.round(seconds)}s`;
    if (seconds < 3600) return `in ${Math.round(seconds / 60)}m`;
    return `in ${Math.round(seconds / 3600)}h`;
  }

  function reservations(data) {
    const held = data.reservations || [];
    $("reservations-count").textContent = `${held.length}`;
    const rows = held.map((r) => {
      const tr = el("tr", "",
        el("td", "", ...r.resources.map((p) => el("span", "chip", p)), r.reason ? el("div", "sub", r.reason) : ""),
        el("td", "", el("strong", "", r.holderHandle || r.holderGuid.slice(0, 8)), el("div", "sub", r.holderGuid.slice(0, 8))),
        el("td", "", r.mode),
        el("td", "num", r.fencingToken),
        el("td", "", inSeconds(r.expiresInS)));
      tr.dataset.reservation = r.reservationId;
      tr.title = `reserved ${r.acquiredAt}, expires ${r.expiresAt}`;
      return tr;
    });
    fill($("reservations").tBodies[0], rows, 5, "no reservations");
  }

  function fleet(data) {
    // The fleet coordinator (`nats-mcp fleet run`): null until one has run in this namespace.
    const f = data.fleet;
    const leader = $("fleet-leader");
    const list = $("fleet-decisions");
    list.replaceChildren();
    if (!f) {
      leader.textContent = "";
      fill($("fleet").tBodies[0], [], 5, "no fleet has run in this namespace");
      return;
    }
    const l = f.leader;
    leader.textContent = !l ? "no coordinator yet"
      : l.active ? `leader ${l.id} on ${l.host} · lease ${Math.max(0, Math.round(l.leaseExpiresInS))}s`
      : `leader ${l.id} on ${l.host} · lease expired`;
    leader.dataset.active = l && l.active ? "true" : "false";
    const rows = f.targets.map((t) => {
      const tr = el("tr", "", el("td", "", el("strong", "", t.name), el("div", "sub", t.mechanism)),
        el("td", "", ...t.capabilities.map((c) => el("span", "chip", c))),
        el("td", "num", `${t.live} / ${t.max}`), el("td", "num", t.starting), el("td", "num", t.pending));
      tr.dataset.target = t.name;
      tr.title = `min ${t.min}, max ${t.max}`;
      return tr;
    });
    fill($("fleet").tBodies[0], rows, 5, "no targets");
    for (const d of f.decisions) {
      const li = el("li", "", el("span", `badge ${d.ok ? "st-online" : "k-anomaly"}`, d.action), " ",
        el("strong", "", d.target), el("span", "sub", ` ${clock(d.at * 1000)} · ${d.reason}`));
      li.dataset.action = d.action;
      li.dataset.target = d.target;
      list.append(li);
    }
    if (!f.decisions.length) list.append(el("li", "empty", "no decisions yet"));
  }

  function channels(data) {
    const box = $("channels");
    box.replaceChildren();
    for (const c of data.channels) {
      const list = el("ul");
      for (const m of c.recent) {
        const li = el("li", "", el("span", "handle", m.handle), el("span", "msg", m.message));
        li.title = m.timestamp;
        list.append(li);
      }
      if (!c.recent.length) list.append(el("li", "empty", "no messages"));
      const section = el("div", "channel", el("h3", "", `#${c.name} `, el("span", "count", `${c.messages} messages`)), list);
      section.dataset.channel = c.name;
      box.append(section);
    }
  }

  function security(data) {
    const s = data.security;
    $("security-note").textContent = s.note || "";
    // Identical events are one row: the server groups them and counts every one it read.
    $("security-count").textContent = s.events.length < s.total ? `${s.total} events, ${s.events.length} distinct`
      : `${s.total}`;
    const rows = s.events.map((e) => {
      const seen = e.count > 1 ? el("div", "sub", `first ${clock(e.firstSeen)}`) : "";
      // The credential is what was refused; the agents it runs are what people know it by.
      const who = [el("div", "", e.principal || "(unauthenticated)")];
      if (e.agents.length) who.push(el("div", "sub", `agent${e.agents.length > 1 ? "s" : ""} ${e.agents.join(", ")}`));
      const tr = el("tr", "", el("td", "", clock(e.lastSeen), seen),
        el("td", "", el("span", `badge k-${e.kind}`, e.kind)), el("td", "", ...who),
        el("td", "", `${e.peer || ""} ${e.transport || ""}`), el("td", "", e.reason || e.outcome || ""),
        el("td", "num count-cell", `×${e.count}`));
      tr.dataset.kind = e.kind;
      tr.dataset.count = String(e.count);
      tr.title = `${e.count} × first ${e.firstSeen}, last ${e.lastSeen}`;
      return tr;
    });
    fill($("security").tBodies[0], rows, 6, "no security events");
  }

  function traffic(data) {
    const t = data.traffic;
    $("traffic-window").textContent = `last ${t.window} tool calls`;
    const box = $("traffic");
    box.replaceChildren();
    if (!t.edges.length) {
      box.append(el("p", "empty", "no tool calls yet"));
      return;
    }
    const principals = [...new Set(t.edges.map((e) => e.principal))];
    // A principal's node names its agents (what people call them) and the credential they came through.
    const names = new Map(t.edges.map((e) => [e.principal, e.agents.length ? `${e.agents.join(", ")} (${e.principal})`
      : e.principal]));
    const tools = [...new Set(t.edges.map((e) => e.tool))];
    const row = 24, w = 900, h = Math.max(principals.length, tools.length) * row + 12;
    const left = 260, right = w - 260;
    const yOf = (list, name) => 6 + (list.indexOf(name) + 0.5) * row * (Math.max(principals.length, tools.length) / list.length);
    const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: "100%", role: "img" });
    const max = Math.max(...t.edges.map((e) => e.calls));
    for (const e of t.edges) {
      const y1 = yOf(principals, e.principal), y2 = yOf(tools, e.tool);
      const path = svg("path", {
        class: e.errors ? "edge err" : "edge",
        d: `M${left},${y1} C${(left + right) / 2},${y1} ${(left + right) / 2},${y2} ${right},${y2}`,
        "stroke-width": (1 + 7 * Math.sqrt(e.calls / max)).toFixed(1),
      });
      const tip = svg("title");
      tip.textContent = `${names.get(e.principal)} → ${e.tool}: ${e.calls} calls, ${e.errors} errors`;
      path.append(tip);
      chart.append(path);
    }
    for (const [list, x, anchor] of [[principals, left - 8, "end"], [tools, right + 8, "start"]]) {
      for (const name of list) {
        const label = svg("text", { x, y: yOf(list, name) + 4, "text-anchor": anchor });
        const text = list === principals ? names.get(name) : name;
        label.textContent = text.length > 40 ? `${text.slice(0, 39)}…` : text;
        chart.append(label);
      }
    }
    box.append(chart);
  }

  function render(data) {
    csrf = data.session.csrf;
    $("ns").textContent = data.namespace;
    $("who").textContent = data.session.principal;
    const conn = $("conn");
    conn.textContent = data.nats.connected ? "NATS connected" : "NATS disconnected";
    conn.className = data.nats.connected ? "conn up" : "conn down";
    $("updated").textContent = `updated ${clock(data.generatedAt)}`;
    const errors = $("errors");
    errors.hidden = !data.errors.length;
    errors.textContent = data.errors.join(" · ");
    agents(data);
    queues(data);
    blocked(data);
    reservations(data);
    fleet(data);
    channels(data);
    security(data);
    traffic(data);
    document.body.dataset.generatedAt = data.generatedAt;
  }

  async function tick() {
    if (leaving) return;
    try {
      const response = await fetch(`${prefix}/api/snapshot`, { credentials: "same-origin", cache: "no-store" });
      if (leaving) return;
      if (response.status === 401) {
        leaving = true;
        location.assign(`${prefix}/login?e=expired`);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      refreshMs = Math.max(500, data.refreshS * 1000);
      render(data);
    } catch (error) {
      const errors = $("errors");
      errors.hidden = false;
      errors.textContent = `cannot reach the server: ${error.message}`;
      $("conn").className = "conn down";
    }
    setTimeout(tick, refreshMs);
  }

  $("logout").addEventListener("click", async () => {
    leaving = true;
    await fetch(`${prefix}/logout`, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
    location.assign(`${prefix}/login`);
  });

  tick();
})();
