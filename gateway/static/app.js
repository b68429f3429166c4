// Pantree web demo: one WebSocket per run; every message is one ProcessSeed event (or an error),
// in the protos' JSON mapping. No framework and no build step; nothing is loaded from elsewhere.
"use strict";

const $ = (selector) => document.querySelector(selector);
const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const monthName = new Intl.DateTimeFormat("en-US", { month: "short", year: "numeric", timeZone: "UTC" });

const state = { socket: null, months: [], names: new Map(), finished: false };

// Plain words for what the gateway can answer (the error body's gRPC status name).
const PLAIN_ERRORS = {
  INVALID_ARGUMENT: "Some of what you entered can't be used.",
  RESOURCE_EXHAUSTED: "That is too much at once. Try fewer items or months.",
  UNAVAILABLE: "The recommendation service can't be reached right now. Please try again in a moment.",
  DEADLINE_EXCEEDED: "The recommendation service took too long to answer. Please try again.",
  UNAUTHENTICATED: "You need to sign in to do this.",
  PERMISSION_DENIED: "Your access token does not allow this.",
  FAILED_PRECONDITION: "The service isn't ready for this yet. Please try again later.",
};

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// A table row whose cells carry their column's heading, shown when narrow screens stack rows.
function row(table, cells) {
  const headings = [...document.querySelectorAll(`${table} thead th`)].map((th) => th.textContent);
  const tr = element("tr");
  cells.forEach((cell, i) => {
    cell.dataset.label = headings[i];
    tr.append(cell);
  });
  $(`${table} tbody`).append(tr);
}

function show(id, visible = true) {
  $(id).hidden = !visible;
}

function setStatus(text, percent) {
  $("#status-text").textContent = text;
  const bar = $("#progress");
  bar.hidden = percent === undefined;
  if (percent !== undefined) bar.value = percent;
}

function showError(error) {
  const box = $("#error");
  box.replaceChildren(element("p", PLAIN_ERRORS[error.status] || "Something went wrong on the server."));
  const details = error.fieldViolations || [];
  if (details.length) {
    const list = element("ul");
    for (const v of details) list.append(element("li", v.description));
    box.append(list);
  } else if (error.message && error.status !== "INTERNAL") {
    box.append(element("p", error.message, "detail"));
  }
  if (error.requestId) box.append(element("p", `Reference: ${error.requestId}`, "detail"));
  box.hidden = false;
  setStatus("Stopped.");
}

// With authentication on, the page needs a token with the process_seed scope: from the address's
// fragment (#token=..., which browsers never send to a server), else asked for when the gateway
// answers 401; kept for this tab only. The WebSocket gets it as ?access_token= (browsers cannot
// set headers on it).
const TOKEN_KEY = "pantree-token";

function accessToken() {
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) {
    sessionStorage.setItem(TOKEN_KEY, fromFragment);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function askForToken() {
  const given = (prompt("This Pantree gateway needs an access token:") || "").trim();
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  return Boolean(given);
}

function dateOf(d) {
  return new Date(Date.UTC(d.year, d.month - 1, d.day || 1));
}

async function loadArchetypes() {
  const select = $("#archetype");
  try {
    const headers = { Accept: "application/json" };
    if (accessToken()) headers.Authorization = `Bearer ${accessToken()}`;
    const response = await fetch("/api/v1/archetypes", { headers });
    if (response.status === 401 && askForToken()) return loadArchetypes();
    const body = await response.json();
    if (!response.ok) throw body.error || { status: "INTERNAL" };
    select.replaceChildren(
      ...body.archetypes.map((a) => {
        const option = element("option", a.displayName || a.archetypeId);
        option.value = a.archetypeId;
        option.title = a.description;
        option.selected = a.archetypeId === "busy_family"; // suits the default basket
        return option;
      }),
    );
  } catch (error) {
    select.replaceChildren(element("option", "Shoppers unavailable"));
    showError(error.status ? error : { status: "UNAVAILABLE" });
  }
}

function reset() {
  state.months = [];
  state.names = new Map();
  state.finished = false;
  $("#error").hidden = true;
  $("#resolution").replaceChildren();
  $("#month-cards").replaceChildren();
  $("#chart").replaceChildren();
  $("#analysis tbody").replaceChildren();
  $("#offers tbody").replaceChildren();
  for (const id of ["#resolution-section", "#months-section", "#analysis-section", "#offers-section"]) {
    show(id, false);
  }
}

function start(event) {
  event.preventDefault();
  if (state.socket) state.socket.close();
  reset();
  const items = $("#items").value.split(",").map((s) => s.trim()).filter(Boolean);
  const request = {
    archetype: $("#archetype").value,
    seedItems: items.map((name) => ({ name })),
    months: Number($("#months").value),
    randomSeed: String(Math.floor(Math.random() * 1e9)),
  };
  const customer = `web-${Math.random().toString(36).slice(2, 10)}`;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = accessToken() ? `?access_token=${encodeURIComponent(accessToken())}` : "";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/stream/${customer}${query}`);
  state.socket = socket;
  setStatus("Connecting…", 0);
  $("#start").disabled = true;
  socket.onopen = () => socket.send(JSON.stringify(request));
  socket.onmessage = (message) => handle(JSON.parse(message.data));
  socket.onclose = () => {
    $("#start").disabled = false;
    if (state.socket === socket && !state.finished && $("#error").hidden) {
      showError({ status: "UNAVAILABLE" });
    }
    if (state.socket === socket) state.socket = null;
  };
}

function handle(event) {
  if (event.error) {
    state.finished = true;
    if (event.error.status === "UNAUTHENTICATED") {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(); // used by the next run
    }
    showError(event.error);
  } else if (event.resolution) {
    renderResolution(event.resolution);
  } else if (event.progress) {
    setStatus(event.progress.message, event.progress.percentComplete);
  } else if (event.month) {
    renderMonth(event.month);
  } else if (event.analysis) {
    renderAnalysis(event.analysis);
  } else if (event.recommendations) {
    renderOffers(event.recommendations);
  } else if (event.summary) {
    state.finished = true;
    renderSummary(event.summary);
  }
}

function renderResolution(resolution) {
  const list = $("#resolution");
  for (const match of resolution.matches) {
    state.names.set(match.product.productId, match.product.name);
    list.append(element("li", `${match.name} → ${match.product.name}`));
  }
  show("#resolution-section");
}

function renderMonth(month) {
  const counts = new Map();
  for (const p of month.purchases) {
    state.names.set(p.productId, p.productName);
    counts.set(p.productName, (counts.get(p.productName) || 0) + 1);
  }
  const top = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 3);
  state.months.push({ label: monthName.format(dateOf(month.startDate)), spend: month.totalSpendUsd, items: month.purchases.length });

  const card = element("li", undefined, "month-card");
  card.append(element("h3", `Month ${month.monthIndex} · ${monthName.format(dateOf(month.startDate))}`));
  card.append(element("p", `${money.format(month.totalSpendUsd)} · ${month.purchases.length} items`, "figures"));
  const often = element("p", `Most bought: ${top.map(([name, n]) => `${name} ×${n}`).join(", ")}`, "detail");
  card.append(often);
  $("#month-cards").append(card);
  show("#months-section");
  setStatus(`Simulated month ${month.monthIndex} of ${month.monthCount}`, Math.round((60 * month.monthIndex) / month.monthCount));
  renderChart();
}

// Bars: spend per month; dots joined by a line: items per month, each on its own scale.
function renderChart() {
  const svg = $("#chart");
  const ns = "http://www.w3.org/2000/svg";
  const shape = (tag, attributes, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  svg.replaceChildren();
  // One viewBox unit per CSS pixel, so labels keep their size at any width.
  const width = Math.max(svg.clientWidth, 240), height = svg.clientHeight || 160;
  const left = 8, right = 8, top = 18, bottom = 20;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const n = Math.max(state.months.length, 1);
  const slot = (width - left - right) / n;
  const maxSpend = Math.max(...state.months.map((m) => m.spend), 1);
  const maxItems = Math.max(...state.months.map((m) => m.items), 1);
  const y = (value, max) => top + (height - top - bottom) * (1 - value / max);
  const points = [];
  state.months.forEach((m, i) => {
    const x = left + i * slot;
    const barTop = y(m.spend, maxSpend);
    const bar = shape("rect", { x: x + slot * 0.2, y: barTop, width: slot * 0.6, height: height - bottom - barTop, class: "bar" });
    const tip = document.createElementNS(ns, "title");
    tip.textContent = `${m.label}: ${money.format(m.spend)}, ${m.items} items`;
    bar.append(tip);
    shape("text", { x: x + slot / 2, y: height - 6, class: "axis" }, m.label.split(" ")[0]);
    points.push([x + slot / 2, y(m.items, maxItems)]);
  });
  shape("polyline", { points: points.map((p) => p.join(",")).join(" "), class: "line" });
  for (const [cx, cy] of points) shape("circle", { cx, cy, r: 3, class: "dot" });
  shape("text", { x: left, y: 12, class: "axis start" }, `max ${money.format(maxSpend)} · ${maxItems} items`);
  svg.setAttribute("aria-label", state.months.map((m) => `${m.label}: ${money.format(m.spend)}, ${m.items} items`).join("; "));
}

function renderAnalysis(analysis) {
  const items = analysis.items.filter((i) => i.meetsMinimumPurchases);
  $("#analysis-summary").textContent =
    `${analysis.eventCount} purchases of ${analysis.items.length} products; ` +
    `${items.length} bought at least ${analysis.minPurchases} times.`;
  const rows = [...items].sort((a, b) => b.confidence - a.confidence).slice(0, 5);
  for (const item of rows) {
    const cv = item.coefficientOfVariation;
    row("#analysis", [
      element("td", state.names.get(item.productId) || item.productId),
      element("td", `${item.meanIntervalDays.toFixed(1)} days`),
      element("td", cv < 0.25 ? "steady" : cv < 0.5 ? "fairly steady" : "irregular"),
      element("td", `${Math.round(item.confidence)}%`),
    ]);
  }
  show("#analysis-section");
}

function renderOffers(recommendations) {
  for (const offer of recommendations.offers) {
    row("#offers", [
      element("td", offer.product.name),
      element("td", `every ${offer.deliveryIntervalDays} days`),
      element("td", `${Math.round(offer.confidence)}%`),
      element("td", `${money.format(offer.savingsPerDeliveryUsd)} per delivery (${money.format(offer.yearlySavingsUsd)}/yr)`),
      element("td", offer.reason, "reason"),
    ]);
  }
  if (!recommendations.offers.length) {
    const cell = element("td", "No product is bought regularly enough for an offer yet.");
    cell.colSpan = 5;
    row("#offers", [cell]);
  }
  show("#offers-section");
}

function renderSummary(summary) {
  $("#summary").textContent =
    `${summary.offerCount} offers saving ${money.format(summary.yearlySavingsUsd)} a year, from ` +
    `${summary.purchaseCount} purchases over ${summary.monthCount} months ` +
    `(${money.format(summary.totalSpendUsd)} spent).`;
  setStatus(`Done in ${Math.round(summary.elapsedMs)} ms.`);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#seed-form").addEventListener("submit", start);
  window.addEventListener("resize", () => state.months.length && renderChart());
  loadArchetypes();
});
