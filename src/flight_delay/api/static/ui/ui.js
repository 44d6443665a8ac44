// The /ui/ page: reads the API of this origin (nothing written) and draws SVG charts.
// Under a strict CSP: no inline code or style, no eval, all text set with textContent.
// Signing in keeps a reader's token in this tab's sessionStorage (no cookie: no CSRF) and sends it as
// Authorization on every call; a 401 asks for it again.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const DAY_MS = 86400000;
const TOKEN_KEY = "flight-delay.token";
const SIGNED_OUT_KEY = "flight-delay.signed-out";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---- the API ----

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const url = query.toString() ? `${path}?${query}` : path;
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { headers, credentials: "omit" });
  } catch (error) {
    throw new ApiError(0, "unreachable", `The API did not answer: ${error.message}`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) askToSignIn(Boolean(token));
    const message = body && body.message ? body.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, body && body.code ? body.code : "error", message);
  }
  return body;
}

// What a section says of a refusal: 401 asks to sign in (the form says why), 403 names the role.
function errorText(error) {
  const code = error.code ? ` (${error.status} ${error.code})` : "";
  if (error.status === 401) return `Sign in with a reader token to see this${code}.`;
  if (error.status === 403 && error.code === "forbidden") return `Needs a reader token: ${error.message}${code}`;
  return `${error.message}${code}`;
}

function showError(element, error) {
  element.textContent = errorText(error);
  element.hidden = false;
}

// ---- signing in: the token in this tab's sessionStorage only ----

function askToSignIn(hadToken) {
  const form = $("signin");
  if (hadToken) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("signin-message").textContent = "That token was refused (401): it is none of this server's. Sign in again.";
  } else if (form.hidden) {
    $("signin-message").textContent = "This server needs a token to read: sign in with a reader (or admin) token.";
  }
  $("signed-in").hidden = true;
  form.hidden = false;
}

function signIn(event) {
  event.preventDefault();
  const token = $("signin-token").value.trim();
  $("signin-token").value = "";
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  location.reload();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.setItem(SIGNED_OUT_KEY, "1");
  location.reload();
}

function wireSignIn() {
  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", signOut);
  if (sessionStorage.getItem(SIGNED_OUT_KEY)) {
    sessionStorage.removeItem(SIGNED_OUT_KEY);
    $("signin-message").textContent = "Signed out: this tab keeps no token.";
    $("signin").hidden = false;
  }
  $("signed-in").hidden = !sessionStorage.getItem(TOKEN_KEY);
}

function hideError(element) {
  element.textContent = "";
  element.hidden = true;
}

// ---- formatting and DOM helpers ----

function number(value, digits = 2) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function utcText(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "") : "–";
}

function dayText(date) {
  return date.toISOString().slice(0, 10);
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function fact(list, term, value) {
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  list.append(dt, dd);
}

function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  if (text !== null) element.textContent = text;
  return element;
}

function newSvg(width, height, label) {
  return svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label });
}

// ---- the active model and its card ----

const state = { model: null, modelError: null, cursors: [null], filters: {}, reports: [] };

async function loadModel() {
  try {
    const model = await api("/model/");
    renderModel(model);
    return model;
  } catch (error) {
    const message = error.code === "model_not_loaded" ? "No model is loaded: " : "";
    showError($("model-error"), { ...error, message: `${message}${error.message}` });
    state.modelError = error;
    return null;
  } finally {
    $("model-loading").hidden = true;
  }
}

function renderModel(model) {
  $("model-version").textContent = model.version;
  $("model-kind").textContent = model.kind;
  $("model-file").textContent = `${model.filename || "–"} (${model.size_bytes} bytes)`;
  $("model-loaded-at").textContent = `${utcText(model.loaded_at)} UTC`;
  renderMetrics(model.metrics || {});
  renderCard(model);
  $("model-body").hidden = false;
}

function renderMetrics(metrics) {
  const body = $("model-metrics").tBodies[0];
  body.replaceChildren();
  const rows = [["this model", metrics.test]];
  for (const [name, figures] of Object.entries(metrics.baselines || {})) rows.push([`baseline: ${name}`, figures]);
  for (const [name, figures] of rows) {
    if (!figures) continue;
    const row = body.insertRow();
    cell(row, name);
    for (const key of ["mae", "rmse", "r2"]) cell(row, number(figures[key]), "num");
    cell(row, figures.rows ?? "–", "num");
  }
}

function bestBaseline(metrics) {
  const baselines = Object.entries(metrics.baselines || {}).filter(([, f]) => f && f.mae !== undefined);
  baselines.sort((a, b) => a[1].mae - b[1].mae);
  return baselines[0];
}

function renderCard(model) {
  const list = $("model-card-facts");
  list.replaceChildren();
  const metrics = model.metrics || {};
  fact(list, "Predicts", "The arrival delay of a flight leaving New York City, in minutes (negative: early).");
  fact(list, "Inputs", model.input_fields.join(", "));
  fact(list, "May be null", model.nullable_fields.join(", ") || "none");
  if (metrics.test) {
    const best = bestBaseline(metrics);
    const against = best ? `; best baseline (${best[0]}) ${number(best[1].mae)}` : "";
    fact(list, "Test MAE", `${number(metrics.test.mae)} min on ${metrics.test.rows} flights${against}`);
  }
  for (const [key, value] of Object.entries(model.training || {})) {
    fact(list, `Training: ${key}`, typeof value === "object" ? JSON.stringify(value) : String(value));
  }
  if (model.contract) fact(list, "Feature contract", `version ${model.contract.version}`);
  fact(list, "First uploaded", `${utcText(model.created_at)} UTC`);
  fact(list, "Watch", "Live MAE against the test MAE, and the features (or the prediction) whose PSI crosses the threshold (below).");
}

// ---- the history ----

function readFilters() {
  const local = (id) => ($(id).value ? new Date($(id).value).toISOString() : "");
  return {
    model_version: $("filter-model-version").value.trim(),
    request_id: $("filter-request-id").value.trim(),
    since: local("filter-since"),
    until: local("filter-until"),
    page_size: $("filter-page-size").value,
  };
}

function localInputValue(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Date(date.getTime() - date.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function writeFilters(params) {
  $("filter-model-version").value = params.get("model_version") || "";
  $("filter-request-id").value = params.get("request_id") || "";
  $("filter-since").value = params.get("since") ? localInputValue(params.get("since")) : "";
  $("filter-until").value = params.get("until") ? localInputValue(params.get("until")) : "";
  if (params.get("page_size")) $("filter-page-size").value = params.get("page_size");
}

async function loadHistory() {
  const cursor = state.cursors[state.cursors.length - 1];
  $("history-status").textContent = "Loading…";
  try {
    const page = await api("/model/history/", { ...state.filters, cursor });
    hideError($("history-error"));
    renderHistory(page);
  } catch (error) {
    showError($("history-error"), error);
    $("history-status").textContent = "";
  }
}

function renderHistory(page) {
  const body = $("history-table").tBodies[0];
  body.replaceChildren(...page.items.map(historyRow));
  const first = (state.cursors.length - 1) * page.page_size;
  $("history-status").textContent = page.items.length
    ? `Rows ${first + 1}–${first + page.items.length} of ${page.total}${page.total_capped ? "+" : ""}, newest first.`
    : "No prediction matches these filters.";
  state.next = page.next_cursor;
  $("history-next").disabled = !page.next_cursor;
  $("history-prev").disabled = state.cursors.length < 2;
  $("history-first").disabled = state.cursors.length < 2;
}

function flightText(input) {
  const date = [input.year, input.month, input.day].every((v) => v !== undefined && v !== null)
    ? `${input.year}-${String(input.month).padStart(2, "0")}-${String(input.day).padStart(2, "0")} `
    : "";
  return `${date}${input.carrier ?? "?"} ${input.origin ?? "?"}→${input.dest ?? "?"}`;
}

function historyRow(item) {
  const row = document.createElement("tr");
  row.tabIndex = 0;
  row.dataset.id = item.id;
  row.setAttribute("aria-label", `Prediction ${item.id}, request ${item.request_id}: open its input and output`);
  cell(row, item.id, "num");
  cell(row, utcText(item.created_at));
  cell(row, item.request_id);
  const model = item.shadow_of ? `${item.model_version.slice(0, 12)} (shadow)` : item.model_version.slice(0, 12);
  cell(row, model, "narrow-hide").title = item.model_version;
  cell(row, flightText(item.input || {}));
  cell(row, number(item.arr_delay, 1), "num");
  cell(row, number(item.latency_ms, 1), "num narrow-hide");
  row.addEventListener("click", () => openDetail(item, row));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openDetail(item, row);
    }
  });
  return row;
}

function openDetail(item, row) {
  const { input, ...output } = item;
  $("detail-title").textContent = `Prediction ${item.id} (request ${item.request_id})`;
  $("detail-input").textContent = JSON.stringify(input, null, 2);
  $("detail-output").textContent = JSON.stringify(output, null, 2);
  const dialog = $("detail");
  dialog.addEventListener("close", () => row.focus(), { once: true });
  dialog.showModal();
  $("detail-close").focus();
}

function applyFilters(event) {
  event.preventDefault();
  if (!$("history-filters").reportValidity()) return;
  state.filters = readFilters();
  state.cursors = [null];
  const shown = Object.entries(state.filters).filter(([key, value]) => value && !(key === "page_size" && value === "50"));
  history.replaceState(null, "", shown.length ? `?${new URLSearchParams(shown)}` : location.pathname);
  loadHistory();
}

function wireHistory() {
  $("history-filters").addEventListener("submit", applyFilters);
  $("history-filters").addEventListener("reset", () => setTimeout(() => $("filter-apply").click(), 0));
  $("history-next").addEventListener("click", () => {
    state.cursors.push(state.next);
    loadHistory();
  });
  $("history-prev").addEventListener("click", () => {
    state.cursors.pop();
    loadHistory();
  });
  $("history-first").addEventListener("click", () => {
    state.cursors = [null];
    loadHistory();
  });
}

// ---- monitoring: live accuracy per day and drift per field ----

function dayWindows(newest, days) {
  const end = Date.UTC(newest.getUTCFullYear(), newest.getUTCMonth(), newest.getUTCDate() + 1);
  const windows = [];
  for (let i = days; i >= 1; i -= 1) {
    windows.push({ since: new Date(end - i * DAY_MS), until: new Date(end - (i - 1) * DAY_MS) });
  }
  return windows;
}

async function report(version, window) {
  const params = { model_version: version, since: window.since.toISOString(), until: window.until.toISOString() };
  return { window, report: await api("/model/monitoring/", params) };
}

async function loadMonitoring() {
  const model = state.model;
  if (!model) return;
  const status = $("monitoring-status");
  status.textContent = "Loading…";
  try {
    const newest = await api("/model/history/", { page_size: 1, model_version: model.version });
    if (!newest.items.length) {
      status.textContent = "No prediction by this model yet.";
      return;
    }
    const windows = dayWindows(new Date(newest.items[0].created_at), Number($("monitoring-days").value));
    const daily = [];
    for (const window of windows) daily.push(await report(model.version, window));
    const whole = await report(model.version, { since: windows[0].since, until: windows.at(-1).until });
    hideError($("monitoring-error"));
    renderMonitoring(daily, whole);
    status.textContent = `${whole.report.predictions} predictions by model ${model.version.slice(0, 12)} in these days; ${whole.report.live.count} with an actual delay.`;
  } catch (error) {
    showError($("monitoring-error"), error);
    status.textContent = "";
  }
}

function renderMonitoring(daily, whole) {
  state.reports = [whole, ...daily];
  const select = $("drift-window");
  select.replaceChildren();
  select.append(new Option(`all ${daily.length} days`, "0"));
  daily.forEach((entry, i) => select.append(new Option(dayText(entry.window.since), String(i + 1))));
  renderAccuracyTable(daily);
  drawAccuracy(daily, state.model.metrics?.test?.mae);
  drawSelectedDrift();
}

function renderAccuracyTable(daily) {
  const body = $("accuracy-table").tBodies[0];
  body.replaceChildren();
  for (const { window, report: r } of daily) {
    const row = body.insertRow();
    cell(row, dayText(window.since));
    cell(row, r.predictions, "num");
    cell(row, r.live.count, "num");
    for (const key of ["mae", "rmse", "mean_error"]) cell(row, number(r.live[key]), "num");
  }
}

function yTicks(svg, top, bottom, left, right, max) {
  for (let i = 0; i <= 4; i += 1) {
    const value = (max * i) / 4;
    const y = bottom - ((bottom - top) * i) / 4;
    svg.append(svgElement("line", { x1: left, x2: right, y1: y, y2: y, class: "grid" }));
    svg.append(svgElement("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, number(value, 1)));
  }
}

function drawAccuracy(daily, testMae) {
  const [width, height, left, right, top, bottom] = [560, 240, 44, 548, 12, 200];
  const svg = newSvg(width, height, "Live MAE per day");
  const maes = daily.map((d) => d.report.live.mae).filter((v) => v !== null);
  const max = Math.max(1, testMae || 0, ...maes) * 1.15;
  yTicks(svg, top, bottom, left, right, max);
  const step = (right - left) / daily.length;
  const x = (i) => left + step * (i + 0.5);
  const y = (v) => bottom - ((bottom - top) * v) / max;
  const every = Math.ceil(daily.length / 7);
  daily.forEach((d, i) => {
    if (i % every === 0) svg.append(svgElement("text", { x: x(i), y: bottom + 16, "text-anchor": "middle" }, dayText(d.window.since).slice(5)));
  });
  svg.append(svgElement("line", { x1: left, x2: right, y1: bottom, y2: bottom, class: "axis" }));
  if (testMae) drawReference(svg, left, right, y(testMae), `test MAE ${number(testMae)}`);
  drawSeries(svg, daily, x, y);
  if (!maes.length) svg.append(svgElement("text", { x: (left + right) / 2, y: (top + bottom) / 2, "text-anchor": "middle", class: "muted" }, "No actual delays recorded in these days (POST /model/actuals/)"));
  svg.append(svgElement("text", { x: 4, y: bottom + 34, class: "muted" }, "MAE, minutes · day (UTC)"));
  $("accuracy-chart").replaceChildren(svg);
}

function drawReference(svg, left, right, y, label) {
  svg.append(svgElement("line", { x1: left, x2: right, y1: y, y2: y, class: "reference" }));
  svg.append(svgElement("text", { x: right, y: y - 4, "text-anchor": "end" }, label));
}

function drawSeries(svg, daily, x, y) {
  let points = [];
  const flush = () => {
    if (points.length > 1) svg.append(svgElement("polyline", { points: points.join(" "), class: "line" }));
    points = [];
  };
  daily.forEach((d, i) => {
    const live = d.report.live;
    if (live.mae === null) return flush();
    points.push(`${x(i)},${y(live.mae)}`);
    const dot = svgElement("circle", { cx: x(i), cy: y(live.mae), r: 4, class: "point" });
    dot.append(svgElement("title", {}, `${dayText(d.window.since)}: MAE ${number(live.mae)} over ${live.count} flights`));
    svg.append(dot);
    return null;
  });
  flush();
}

function drawSelectedDrift() {
  const chosen = state.reports[Number($("drift-window").value || 0)];
  if (!chosen) return;
  const label = $("drift-window").selectedOptions[0]?.textContent || "the window";
  $("drift-window-label").textContent = label;
  const note = $("drift-note");
  note.hidden = !chosen.report.drift_unavailable;
  note.textContent = chosen.report.drift_unavailable || "";
  $("drift-compared").textContent = comparedText(chosen.window, label, chosen.report);
  const freshness = $("drift-freshness");
  freshness.hidden = !chosen.report.freshness.lagging;
  freshness.textContent = lagText(chosen.report.freshness);
  drawDrift(chosen.report.drift || {}, chosen.report.psi_threshold, chosen.report.predictions);
}

// Which window is compared with which reference: the report's own words, as the API gives them.
function comparedText(window, label, r) {
  const until = new Date(r.freshness.counted_until) < window.until ? ` (counted until ${timeText(r.freshness.counted_until)})` : "";
  const compared = `Compares ${label}: ${dayText(window.since)} to ${dayText(new Date(window.until - 1))} UTC${until}, ${r.predictions} predictions`;
  const ref = r.reference;
  if (!ref) return `${compared}.`;
  const span = ref.first_flight ? ` from ${ref.first_flight} to ${ref.last_flight}` : "";
  const mixed = ref.at_departure_share === null ? "" : `, its at-departure and before-departure bases weighted ${number(ref.at_departure_share * 100, 0)}% / ${number(100 - ref.at_departure_share * 100, 0)}% as this window's predictions`;
  return `${compared}, with the model's training profile of its ${ref.of} (${ref.flights} flights${span}${mixed}).`;
}

function lagText(freshness) {
  const since = freshness.rolled_up_until ? `rolled up until ${timeText(freshness.rolled_up_until)}` : "never rolled up";
  return `The roll-ups lag by ${number(freshness.lag_seconds / 60, 0)} minutes (${since}): later predictions are not counted yet.`;
}

function timeText(iso) {
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ");
}

function drawDrift(drift, threshold, predictions) {
  // Features first, then the prediction, set apart by a gap and a rule.
  const fields = [...Object.entries(drift).filter(([, f]) => f.of !== "prediction"), ...Object.entries(drift).filter(([, f]) => f.of === "prediction")];
  const [left, right, top, row] = [110, 490, 8, 22];
  const rowY = (i, f) => top + i * row + (f.of === "prediction" ? 10 : 0);
  const height = top + row * Math.max(fields.length, 1) + 40;
  const svg = newSvg(560, height, `PSI per feature the model reads, and of its prediction; threshold ${threshold}`);
  const max = Math.max(threshold * 1.5, ...fields.map(([, f]) => f.psi));
  const x = (v) => left + ((right - left) * Math.min(v, max)) / max;
  fields.forEach(([name, figures], i) => {
    const y = rowY(i, figures);
    if (figures.of === "prediction") svg.append(svgElement("line", { x1: 4, x2: right, y1: y - 3, y2: y - 3, class: "grid" }));
    svg.append(svgElement("text", { x: left - 6, y: y + 14, "text-anchor": "end", class: figures.of === "prediction" ? "emphasis" : "" }, name));
    const bar = svgElement("rect", { x: left, y: y + 3, width: Math.max(x(figures.psi) - left, 1), height: row - 6, class: figures.drifted ? "bar drifted" : "bar" });
    bar.append(svgElement("title", {}, `${name}: PSI ${number(figures.psi, 3)}${figures.drifted ? " (drifted)" : ""}`));
    svg.append(bar, svgElement("text", { x: x(figures.psi) + 4, y: y + 14 }, number(figures.psi, 3)));
  });
  const bottom = top + row * Math.max(fields.length, 1) + 10;
  svg.append(svgElement("line", { x1: x(threshold), x2: x(threshold), y1: top, y2: bottom, class: "threshold" }));
  svg.append(svgElement("text", { x: x(threshold), y: bottom + 14, "text-anchor": "middle" }, `threshold ${threshold}`));
  if (!predictions) svg.append(svgElement("text", { x: left, y: top + 14, class: "muted" }, "No prediction in this window."));
  $("drift-chart").replaceChildren(svg);
}

// ---- versions, the traffic split, replays and the audit ----

const short = (version) => (version ? version.slice(0, 12) : "–");

function versionCell(row, version) {
  const td = cell(row, short(version));
  if (version) td.title = version;
  return td;
}

async function loadVersions() {
  try {
    const [listed, traffic, audit, replays] = await Promise.all([
      api("/model/versions/"),
      api("/model/traffic"),
      api("/model/audit/"),
      api("/model/replays/", { limit: 10 }),
    ]);
    hideError($("versions-error"));
    renderTraffic(traffic);
    renderVersions(listed.versions);
    renderReplays(replays.replays);
    renderAudit(audit.events);
  } catch (error) {
    showError($("versions-error"), error);
  }
}

function renderTraffic(traffic) {
  const canary = traffic.canary;
  const parts = [`Active ${short(traffic.active)} answers ${number(100 - (canary ? canary.percent : 0), 1)}% of requests`];
  if (canary) parts.push(`canary ${short(canary.version)} answers ${number(canary.percent, 1)}% (by a hash of X-Request-ID)`);
  parts.push(traffic.shadow ? `shadow ${short(traffic.shadow)} scores every prediction, unanswered` : "no shadow");
  if (traffic.rollback_to) parts.push(`a rollback returns to ${short(traffic.rollback_to)}`);
  $("traffic-text").textContent = `${parts.join("; ")}.`;
  drawTraffic(traffic);
}

function drawTraffic(traffic) {
  const [left, right] = [8, 552];
  const svg = newSvg(560, 46, "Share of requests per version");
  const canaryShare = traffic.canary ? traffic.canary.percent : 0;
  const split = left + ((right - left) * (100 - canaryShare)) / 100;
  const active = svgElement("rect", { x: left, y: 4, width: split - left, height: 20, class: "bar" });
  active.append(svgElement("title", {}, `${short(traffic.active)}: ${number(100 - canaryShare, 1)}%`));
  svg.append(active, svgElement("text", { x: left + 4, y: 40 }, `active ${short(traffic.active)} ${number(100 - canaryShare, 1)}%`));
  if (traffic.canary) {
    const canary = svgElement("rect", { x: split, y: 4, width: Math.max(right - split, 1), height: 20, class: "bar canary" });
    canary.append(svgElement("title", {}, `${short(traffic.canary.version)}: ${number(canaryShare, 1)}%`));
    svg.append(canary, svgElement("text", { x: right, y: 40, "text-anchor": "end" }, `canary ${short(traffic.canary.version)} ${number(canaryShare, 1)}%`));
  }
  $("traffic-chart").replaceChildren(svg);
}

function renderVersions(versions) {
  const body = $("versions-table").tBodies[0];
  body.replaceChildren();
  for (const entry of versions) {
    const row = body.insertRow();
    row.dataset.version = entry.version;
    versionCell(row, entry.version);
    cell(row, entry.stage, `stage-${entry.stage}`);
    cell(row, `${number(entry.traffic, 1)}%`, "num");
    cell(row, entry.shadow ? "shadow" : "–");
    cell(row, utcText(entry.uploaded_at), "narrow-hide");
    cell(row, utcText(entry.activated_at), "narrow-hide");
    cell(row, number(entry.test_mae), "num");
  }
}

function renderReplays(replays) {
  const body = $("replays-table").tBodies[0];
  body.replaceChildren();
  $("replays-empty").hidden = replays.length > 0;
  for (const replay of replays) {
    const row = body.insertRow();
    row.dataset.replay = replay.id;
    cell(row, utcText(replay.started_at));
    versionCell(row, replay.version);
    cell(row, `${utcText(replay.window.since)} → ${utcText(replay.window.until)}`, "narrow-hide");
    cell(row, replay.flights ?? "–", "num");
    cell(row, number(replay.candidate?.mae), "num");
    cell(row, number(replay.served?.mae), "num");
    cell(row, number(replay.candidate?.rmse), "num narrow-hide");
    cell(row, number(replay.served?.rmse), "num narrow-hide");
    cell(row, replay.error ? `${replay.status}: ${replay.error.message}` : replay.status);
  }
}

function renderAudit(events) {
  const body = $("audit-table").tBodies[0];
  body.replaceChildren();
  for (const event of [...events].reverse().slice(0, 50)) {
    const row = body.insertRow();
    cell(row, utcText(event.at));
    const action = event.action === "canary" && event.version ? `canary ${number(event.percent, 1)}%` : event.action;
    cell(row, event.version || event.action === "upload" ? action : `${action} cleared`);
    versionCell(row, event.version);
    versionCell(row, event.previous).classList.add("narrow-hide");
    cell(row, event.by);
    cell(row, event.reason || "–");
  }
}

// ---- start ----

async function start() {
  wireSignIn();
  const params = new URLSearchParams(location.search);
  writeFilters(params);
  state.filters = readFilters();
  wireHistory();
  $("monitoring-days").addEventListener("change", loadMonitoring);
  $("drift-window").addEventListener("change", drawSelectedDrift);
  const historyLoaded = loadHistory();
  const versionsLoaded = loadVersions();
  state.model = await loadModel();
  const refused = state.modelError && [401, 403].includes(state.modelError.status);
  if (!state.model) showError($("monitoring-error"), refused ? state.modelError : { message: "Monitoring needs an active model.", code: "" });
  await Promise.all([historyLoaded, versionsLoaded, loadMonitoring()]);
  document.body.dataset.ready = "true";
}

start();
