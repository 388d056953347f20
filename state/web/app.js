// The time-slider page of `rewind serve`: plain JavaScript over the JSON API, no libraries.
//
// Key mode:   GET /views/{view}/{key}/history gives the versions (the timeline and the slider's range);
//             GET /views/{view}/{key}?as_of=T gives the row as of the slider's time.
// Index mode: GET /views/{view}?index=&value=&limit= (now) gives the slider's default range;
//             the same with &as_of=T gives the rows as of the slider's time.
// Live:       polls GET /views for the replica's position; when it moves, reloads and shows "now".
//
// The page's state lives in the URL fragment (#view=…&key=…&t=…), so a view of the past can be shared.
// #result carries data-state (empty | loading | ready | none | error) and data-as-of-ms for tests and tools.
"use strict";

(() => {
  // The API's time range (years 1-9999, epoch ms); a slider never leaves it.
  const MIN_TIME_MS = -62135596800000;
  const MAX_TIME_MS = 253402300799999;
  const POLL_MS = 1000;

  const $ = (id) => document.getElementById(id);
  const el = {
    view: $("view"), key: $("key"), index: $("index"), value: $("value"), valueLabel: $("value-label"), limit: $("limit"),
    form: $("pick"), live: $("live"), slider: $("slider"), timeline: $("timeline"), from: $("from"), to: $("to"), time: $("time"),
    message: $("message"), position: $("position"), result: $("result"),
    rowPanel: $("row-panel"), rowKey: $("row-key"), rowHeadline: $("row-headline"), rowAsOf: $("row-as-of"),
    rowValidFrom: $("row-valid-from"), rowValidTo: $("row-valid-to"), rowSource: $("row-source"), row: $("row"),
    rowsPanel: $("rows-panel"), rowsTitle: $("rows-title"), rowsField: $("rows-field"), rows: $("rows"),
    versionsPanel: $("versions-panel"), versions: $("versions"), versionsCount: $("versions-count"),
  };

  const state = {
    views: new Map(),       // view name -> {key_field, indexes}
    target: null,           // what is shown: {mode, view, key} or {mode, view, index, value, limit}
    versions: [],           // key mode: the key's history, oldest first
    generation: 0,          // bumped on every new target: answers for an older one are dropped
    position: null,         // the replica position last seen (JSON text)
    pollTimer: null,
  };

  // ---- small helpers -------------------------------------------------------------------

  function isoOf(ms) {
    if (ms === null || ms === undefined) return "";
    const date = new Date(ms);
    return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
  }

  // A time typed by a person: epoch ms, or anything Date.parse reads (ISO-8601 with a zone). NaN otherwise.
  function parseTime(text) {
    const t = text.trim();
    if (/^-?\d+$/.test(t)) return Number(t);
    return Date.parse(t);
  }

  const clampTime = (ms) => Math.min(MAX_TIME_MS, Math.max(MIN_TIME_MS, ms));

  // One path segment. A key may hold any character; '.' and '..' alone are the only ones a browser cannot
  // send as a segment (the URL standard removes dot segments, even percent-encoded ones).
  function segment(text) {
    if (text === "." || text === "..") {
      throw new PageError("UnreachableKey", `the key ${JSON.stringify(text)} cannot be asked for from a browser (URL dot segment); use rewind query`);
    }
    return encodeURIComponent(text);
  }

  class PageError extends Error {
    constructor(error, detail) { super(detail); this.error = error; this.detail = detail; }
  }

  // GET a JSON answer; returns {status, body}. A network failure becomes a PageError.
  async function api(path) {
    let response;
    try {
      response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (exc) {
      throw new PageError("Unreachable", `cannot reach rewind serve: ${exc.message}`);
    }
    let body = null;
    try { body = await response.json(); } catch (_) { body = { error: `HTTP ${response.status}`, detail: response.statusText || "not JSON" }; }
    return { status: response.status, body };
  }

  function headlineField(view) {
    const info = state.views.get(view);
    return info && info.indexes.length ? info.indexes[0].field : null;
  }

  function show(text, kind) {
    el.message.textContent = text;
    el.message.className = kind;
  }

  function fail(body) {
    return new PageError(body && body.error ? body.error : "Error", body && body.detail ? body.detail : "unknown error");
  }

  function sourceText(source) {
    return source ? `${source.topic} [${source.partition}] @ ${source.offset}` : "—";
  }

  function positionText(position) {
    const parts = [];
    for (const [topic, offsets] of Object.entries(position || {})) {
      const total = Object.values(offsets).reduce((a, b) => a + b, 0);
      parts.push(`${topic}: ${total}`);
    }
    return parts.length ? `replica at ${parts.join(", ")}` : "replica empty";
  }

  function valueText(value) {
    return value !== null && typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function cell(tr, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  }

  // ---- the URL fragment ------------------------------------------------------------------

  function readHash() {
    return new URLSearchParams(window.location.hash.replace(/^#/, ""));
  }

  // atMs: the time shown (default: the slider's); omitted while live, which always shows now.
  function writeHash(atMs) {
    const t = state.target;
    if (!t) return;
    const params = new URLSearchParams({ view: t.view });
    if (t.mode === "key") params.set("key", t.key);
    else {
      params.set("index", t.index);
      if (t.value !== null) params.set("value", t.value);
      params.set("limit", String(t.limit));
    }
    if (el.live.checked) params.set("live", "1");
    else if (atMs !== undefined && atMs !== null) params.set("t", String(atMs));
    else if (!el.slider.disabled) params.set("t", el.slider.value);
    history.replaceState(null, "", `#${params}`);
  }

  // ---- the form ----------------------------------------------------------------------------

  const mode = () => document.querySelector('input[name="mode"]:checked').value;

  function setMode(value) {
    document.querySelector(`input[name="mode"][value="${value}"]`).checked = true;
    document.body.dataset.mode = value;
  }

  function fillIndexes() {
    const info = state.views.get(el.view.value);
    el.index.replaceChildren();
    for (const spec of info ? info.indexes : []) {
      const option = new Option(`${spec.name} (${spec.kind}${spec.kind === "ranking" ? ", largest first" : ""})`, spec.name);
      option.dataset.kind = spec.kind;
      el.index.appendChild(option);
    }
    if (info) el.key.placeholder = info.key_field;
    fillValueState();
  }

  function fillValueState() {
    const option = el.index.selectedOptions[0];
    const ranking = option && option.dataset.kind === "ranking";
    el.value.disabled = ranking;
    el.valueLabel.classList.toggle("off", ranking);
  }

  function targetFromForm() {
    const view = el.view.value;
    if (mode() === "key") {
      if (el.key.value === "") throw new PageError("MissingKey", "type a key first");
      return { mode: "key", view, key: el.key.value };
    }
    const option = el.index.selectedOptions[0];
    if (!option) throw new PageError("NoIndex", `view ${view} has no index`);
    const ranking = option.dataset.kind === "ranking";
    if (!ranking && el.value.value === "") throw new PageError("MissingValue", `index ${option.value} needs a value, e.g. SHIPPED`);
    const limit = Number(el.limit.value) || 50;
    return { mode: "index", view, index: option.value, value: ranking ? null : el.value.value, limit };
  }

  // ---- the slider and the timeline -------------------------------------------------------------

  function setRange(fromMs, toMs) {
    let from = clampTime(Math.floor(fromMs));
    let to = clampTime(Math.ceil(toMs));
    if (to <= from) to = Math.min(MAX_TIME_MS, from + 1);
    if (to <= from) from = to - 1;
    el.slider.min = String(from);
    el.slider.max = String(to);
    el.slider.disabled = false;
    el.from.value = isoOf(from);
    el.to.value = isoOf(to);
    drawTimeline();
  }

  // The default range around some times: a margin either side, so "before the first version" can be seen.
  function rangeAround(times) {
    const first = Math.min(...times);
    const last = Math.max(...times);
    const span = last - first;
    const pad = span === 0 ? 3600000 : Math.max(60000, Math.round(span * 0.06));
    setRange(first - pad, last + pad);
  }

  function sliderAt(ms) {
    el.slider.value = String(ms);
    el.time.value = isoOf(ms);
  }

  function drawTimeline() {
    el.timeline.replaceChildren();
    if (!state.target || state.target.mode !== "key") return;
    const from = Number(el.slider.min);
    const to = Number(el.slider.max);
    const field = headlineField(state.target.view);
    state.versions.forEach((version, i) => {
      const at = version.valid_from_ms;
      if (at < from || at > to) return;
      const mark = document.createElement("button");
      mark.type = "button";
      mark.className = "mark";
      mark.dataset.validFromMs = String(at);
      mark.style.left = `${((at - from) / (to - from)) * 100}%`;
      mark.title = `#${i + 1} ${field ? valueText(version.row[field]) : ""} from ${version.valid_from}`;
      mark.addEventListener("click", () => jumpTo(at));
      el.timeline.appendChild(mark);
    });
  }

  function drawVersions() {
    el.versions.replaceChildren();
    const field = headlineField(state.target.view);
    el.versionsCount.textContent = `(${state.versions.length})`;
    state.versions.forEach((version, i) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.validFromMs = String(version.valid_from_ms);
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = `#${i + 1}`;
      const what = document.createElement("b");
      what.textContent = field ? valueText(version.row[field]) : "version";
      const when = document.createElement("time");
      when.textContent = version.valid_from;
      const where = document.createElement("span");
      where.className = "src";
      where.textContent = version.source ? `p${version.source.partition} @${version.source.offset}` : "";
      button.append(n, what, when, where);
      button.addEventListener("click", () => jumpTo(version.valid_from_ms));
      li.appendChild(button);
      el.versions.appendChild(li);
    });
    el.versionsPanel.hidden = false;
  }

  function markCurrentVersion(validFromMs) {
    for (const node of document.querySelectorAll("#versions button, #timeline .mark")) {
      node.classList.toggle("current", validFromMs !== null && Number(node.dataset.validFromMs) === validFromMs);
    }
  }

  // Clicking a version: the slider moves to its valid_from (widening the range if needed), live stops.
  function jumpTo(ms) {
    stopLive();
    if (ms < Number(el.slider.min) || ms > Number(el.slider.max)) {
      setRange(Math.min(ms, Number(el.slider.min)), Math.max(ms, Number(el.slider.max)));
    }
    sliderAt(ms);
    ask(ms);
  }

  // ---- asking: one request in flight, the newest wish next ---------------------------------------

  const runner = { busy: false, next: undefined };

  // asOf: epoch ms (the slider), a typed string (sent as typed: the API judges it), or null (now).
  function ask(asOf) {
    runner.next = { asOf, generation: state.generation };
    el.result.dataset.state = "loading";
    if (typeof asOf !== "string") writeHash(asOf);
    if (!runner.busy) pump();
  }

  async function pump() {
    runner.busy = true;
    while (runner.next !== undefined) {
      const job = runner.next;
      runner.next = undefined;
      let outcome;
      try {
        outcome = await answerAt(job.asOf);
      } catch (exc) {
        outcome = { error: exc };
      }
      if (job.generation === state.generation) render(job, outcome);
    }
    runner.busy = false;
  }

  async function answerAt(asOf) {
    const t = state.target;
    const params = new URLSearchParams();
    let path;
    if (t.mode === "key") {
      path = `/views/${segment(t.view)}/${segment(t.key)}`;
    } else {
      path = `/views/${segment(t.view)}`;
      params.set("index", t.index);
      if (t.value !== null) params.set("value", t.value);
      params.set("limit", String(t.limit));
    }
    if (asOf !== null) params.set("as_of", String(asOf));
    const query = params.toString();
    return api(query ? `${path}?${query}` : path);
  }

  function render(job, outcome) {
    const pending = runner.next !== undefined;
    const t = state.target;
    if (outcome.error) {
      settle("error", null);
      clearResult();
      show(`${outcome.error.error || "Error"}: ${outcome.error.detail || outcome.error.message}`, "error");
      return;
    }
    const { status, body } = outcome;
    if (status === 200) {
      el.position.textContent = positionText(body.position);
      if (typeof job.asOf === "string" && body.as_of_ms !== null) {
        // A typed time, as the API read it: show it in ISO, and on the slider when it lies in the range.
        el.time.value = body.as_of;
        if (body.as_of_ms >= Number(el.slider.min) && body.as_of_ms <= Number(el.slider.max)) el.slider.value = String(body.as_of_ms);
        writeHash(body.as_of_ms);
      }
      if (t.mode === "key") renderRow(body);
      else renderRows(body);
      settle(pending ? "loading" : "ready", body.as_of_ms);
      return;
    }
    clearResult();
    if (status === 404 && body.error === "KeyNotFoundError" && t.mode === "key" && state.versions.length) {
      // A time outside the key's history: before its first version (or after a last version that ended) there is no row.
      const first = state.versions[0];
      const last = state.versions[state.versions.length - 1];
      const asOfMs = typeof job.asOf === "number" ? job.asOf : parseTime(String(job.asOf));
      const why = !(asOfMs >= first.valid_from_ms) ? `Its history begins at ${first.valid_from}.`
        : last.valid_to !== null ? `Its last version ended at ${last.valid_to}.` : "";
      show(`No row as of ${isoOf(asOfMs)}: ${body.detail}. ${why}`.trim(), "info");
      markCurrentVersion(null);
      settle(pending ? "loading" : "none", Number.isFinite(asOfMs) ? asOfMs : null);
      return;
    }
    show(`${body.error}: ${body.detail}`, "error");
    settle("error", null);
  }

  function settle(kind, asOfMs) {
    el.result.dataset.state = kind;
    if (asOfMs === null || asOfMs === undefined) delete el.result.dataset.asOfMs;
    else el.result.dataset.asOfMs = String(asOfMs);
  }

  function clearResult() {
    el.rowPanel.hidden = true;
    el.rowsPanel.hidden = true;
  }

  function renderRow(body) {
    const version = body.row;
    const field = headlineField(body.view);
    el.rowKey.textContent = body.key;
    el.rowHeadline.textContent = field && field in version.row ? valueText(version.row[field]) : "";
    el.rowHeadline.dataset.value = el.rowHeadline.textContent;
    el.rowAsOf.textContent = body.as_of || "now";
    el.rowValidFrom.textContent = `${version.valid_from} (${version.valid_from_ms})`;
    el.rowValidTo.textContent = version.valid_to === null ? "— (current)" : `${version.valid_to} (${version.valid_to_ms})`;
    el.rowSource.textContent = sourceText(version.source);
    el.row.replaceChildren();
    for (const [name, value] of Object.entries(version.row)) {
      const tr = document.createElement("tr");
      tr.dataset.field = name;
      const th = document.createElement("th");
      th.textContent = name;
      tr.appendChild(th);
      cell(tr, valueText(value));
      el.row.appendChild(tr);
    }
    el.rowPanel.hidden = false;
    el.rowsPanel.hidden = true;
    markCurrentVersion(version.valid_from_ms);
    show(versionNote(version), "hint");
  }

  function versionNote(version) {
    const i = state.versions.findIndex((v) => v.valid_from_ms === version.valid_from_ms);
    return i < 0 ? "" : `Version ${i + 1} of ${state.versions.length}.`;
  }

  function renderRows(body) {
    const field = (state.views.get(body.view)?.indexes.find((spec) => spec.name === body.index) || {}).field || body.index;
    const what = body.value === null ? `by ${body.index}, largest first` : `with ${field} = ${body.value}`;
    el.rowsTitle.textContent = `${body.count} row${body.count === 1 ? "" : "s"} of ${body.view} ${what}, as of ${body.as_of || "now"}`;
    el.rowsField.textContent = field;
    el.rows.replaceChildren();
    for (const version of body.rows) {
      const tr = document.createElement("tr");
      tr.dataset.key = version.key;
      const keyCell = document.createElement("td");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "link";
      open.textContent = version.key;
      open.title = "Show this key's history";
      open.addEventListener("click", () => openKey(body.view, version.key, body.as_of_ms));
      keyCell.appendChild(open);
      tr.appendChild(keyCell);
      cell(tr, valueText(version.row[field]), "value");
      cell(tr, version.valid_from);
      cell(tr, version.valid_to === null ? "—" : version.valid_to);
      cell(tr, sourceText(version.source), "src");
      el.rows.appendChild(tr);
    }
    el.rowsPanel.hidden = false;
    el.rowPanel.hidden = true;
    show(body.count === body.rows.length && body.count >= state.target.limit ? `Showing the first ${body.count} (raise Limit for more).` : "", "hint");
  }

  // ---- loading a target --------------------------------------------------------------------------

  // Load what the form (or the fragment) names; atMs: where to put the slider (null: the newest time).
  // quiet (live reloads): keep showing the current answer until the new one arrives.
  async function load(target, atMs, quiet = false) {
    state.target = target;
    state.generation += 1;
    const generation = state.generation;
    document.body.dataset.mode = target.mode;
    if (!quiet) {
      state.versions = [];
      el.versionsPanel.hidden = true;
      el.timeline.replaceChildren();
      clearResult();
      show("Loading…", "hint");
    }
    settle("loading", null);
    try {
      if (target.mode === "key") {
        const { status, body } = await api(`/views/${segment(target.view)}/${segment(target.key)}/history`);
        if (generation !== state.generation) return;
        if (status !== 200) throw fail(body);
        el.position.textContent = positionText(body.position);
        state.versions = body.versions;
        rangeAround(state.versions.map((v) => v.valid_from_ms));
        drawVersions();
        drawTimeline();
      } else {
        const query = new URLSearchParams({ index: target.index, limit: String(target.limit) });
        if (target.value !== null) query.set("value", target.value);
        const { status, body } = await api(`/views/${segment(target.view)}?${query}`);
        if (generation !== state.generation) return;
        if (status !== 200) throw fail(body);
        el.position.textContent = positionText(body.position);
        // The API keeps no time range per index: default to the span of the rows valid now (From/To widen it).
        const times = body.rows.map((v) => v.valid_from_ms);
        rangeAround(times.length ? times : [Date.now()]);
      }
    } catch (exc) {
      if (generation !== state.generation) return;
      el.slider.disabled = true;
      settle("error", null);
      show(`${exc.error || "Error"}: ${exc.detail || exc.message}`, "error");
      writeHash();
      return;
    }
    if (el.live.checked) {
      goLive();
      return;
    }
    const at = atMs !== null && Number.isFinite(atMs) ? atMs : newestTime();
    if (at < Number(el.slider.min) || at > Number(el.slider.max)) {
      setRange(Math.min(at, Number(el.slider.min)), Math.max(at, Number(el.slider.max)));
    }
    sliderAt(at);
    ask(at);
  }

  function newestTime() {
    if (state.target.mode === "key" && state.versions.length) return state.versions[state.versions.length - 1].valid_from_ms;
    return Number(el.slider.max);
  }

  function openKey(view, key, asOfMs) {
    setMode("key");
    el.key.value = key;
    load({ mode: "key", view, key }, asOfMs);
  }

  // ---- live ------------------------------------------------------------------------------------

  // Live shows "now" (no as_of) and reloads whenever the replica's position moves.
  function goLive() {
    sliderAt(newestTime());
    ask(null);
    if (state.pollTimer === null) state.pollTimer = window.setInterval(poll, POLL_MS);
  }

  function stopLive() {
    if (el.live.checked) el.live.checked = false;
    if (state.pollTimer !== null) {
      window.clearInterval(state.pollTimer);
      state.pollTimer = null;
    }
  }

  let polling = false;
  async function poll() {
    if (polling || !state.target) return;
    polling = true;
    try {
      const { status, body } = await api("/views");
      if (status !== 200 || !el.live.checked) return;
      const position = JSON.stringify(body.position);
      el.position.textContent = positionText(body.position);
      if (position !== state.position) {
        state.position = position;
        await load(state.target, null, true);
      }
    } catch (exc) {
      show(`${exc.error || "Error"}: ${exc.detail || exc.message}`, "error");
    } finally {
      polling = false;
    }
  }

  // ---- wiring --------------------------------------------------------------------------------------

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      load(targetFromForm(), null);
    } catch (exc) {
      show(`${exc.error}: ${exc.detail}`, "error");
    }
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => { document.body.dataset.mode = mode(); });
  }
  el.view.addEventListener("change", fillIndexes);
  el.index.addEventListener("change", fillValueState);

  el.slider.addEventListener("input", () => {
    stopLive();
    const ms = Number(el.slider.value);
    el.time.value = isoOf(ms);
    ask(ms);
  });

  // Arrow keys and Page Up/Down: to the previous/next version (a key), or by 1% of the range (an index);
  // the browser's own step would be one millisecond. Home/End keep their meaning (the range's ends).
  el.slider.addEventListener("keydown", (event) => {
    const forward = { ArrowRight: true, ArrowUp: true, PageUp: true, ArrowLeft: false, ArrowDown: false, PageDown: false }[event.key];
    if (forward === undefined || !state.target) return;
    event.preventDefault();
    const now = Number(el.slider.value);
    let next;
    if (state.target.mode === "key" && state.versions.length) {
      const times = state.versions.map((v) => v.valid_from_ms);
      next = forward ? times.find((t) => t > now) : [...times].reverse().find((t) => t < now);
      if (next === undefined) return;
    } else {
      const step = Math.max(1, Math.round((Number(el.slider.max) - Number(el.slider.min)) / 100));
      next = Math.min(Number(el.slider.max), Math.max(Number(el.slider.min), now + (forward ? step : -step)));
    }
    stopLive();
    sliderAt(next);
    ask(next);
  });

  el.time.addEventListener("change", () => {
    if (!state.target) return;
    stopLive();
    const text = el.time.value.trim();
    if (text === "") return;
    // Asked as typed: the API reads the time (ISO-8601 with zone, or epoch ms) or says why not; the answer moves the slider.
    ask(text);
  });

  function rangeEdited() {
    const from = parseTime(el.from.value);
    const to = parseTime(el.to.value);
    if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
      show(`InvalidRange: From and To must be times (ISO-8601 with zone, or epoch ms), From before To`, "error");
      return;
    }
    const at = Math.min(Math.max(Number(el.slider.value), from), to);
    setRange(from, to);
    sliderAt(at);
    if (state.target) { stopLive(); ask(at); }
  }
  el.from.addEventListener("change", rangeEdited);
  el.to.addEventListener("change", rangeEdited);

  el.live.addEventListener("change", () => {
    if (!state.target) { el.live.checked = false; return; }
    if (el.live.checked) goLive();
    else stopLive();
    writeHash();
  });

  window.addEventListener("resize", drawTimeline);

  async function start() {
    try {
      const { status, body } = await api("/views");
      if (status !== 200) throw fail(body);
      state.position = JSON.stringify(body.position);
      el.position.textContent = positionText(body.position);
      for (const info of body.views) {
        state.views.set(info.view, info);
        el.view.appendChild(new Option(info.view, info.view));
      }
    } catch (exc) {
      show(`${exc.error || "Error"}: ${exc.detail || exc.message}`, "error");
      return;
    }
    fillIndexes();
    document.body.dataset.mode = mode();
    applyHash();
    // A fragment typed or pasted by hand (the page's own updates use replaceState, which fires no event).
    window.addEventListener("hashchange", applyHash);
  }

  // Show what the URL fragment names: #view=V&key=K or #view=V&index=I[&value=X][&limit=N], with &t=ms or &live=1.
  function applyHash() {
    const hash = readHash();
    const view = hash.get("view");
    if (view === null) return;
    if (!state.views.has(view) && ![...el.view.options].some((option) => option.value === view)) {
      el.view.appendChild(new Option(`${view} (unknown)`, view));
    }
    el.view.value = view;
    fillIndexes();
    const t = hash.has("t") ? Number(hash.get("t")) : null;
    el.live.checked = hash.get("live") === "1";
    if (!el.live.checked) stopLive();
    if (hash.has("index")) {
      setMode("index");
      el.index.value = hash.get("index");
      fillValueState();
      el.value.value = hash.get("value") || "";
      if (hash.has("limit")) el.limit.value = hash.get("limit");
      const limit = Number(el.limit.value) || 50;
      load({ mode: "index", view, index: hash.get("index"), value: hash.has("value") ? hash.get("value") : null, limit }, t);
    } else if (hash.has("key")) {
      setMode("key");
      el.key.value = hash.get("key");
      load({ mode: "key", view, key: hash.get("key") }, t);
    }
  }

  start();
})();
