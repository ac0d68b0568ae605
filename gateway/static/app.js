// The Export Center page: plain JavaScript, no build step, no inline scripts (CSP).
"use strict";

const state = { token: null, role: null, lang: "en", strings: {}, preview: null, watchers: new Map() };
const $ = (id) => document.getElementById(id);

// ---- translations -------------------------------------------------------------------
function t(key, vars = {}) {
  let s = state.strings[key] ?? key.replace(/^(entity|action|col|role)_/, "");
  for (const [k, v] of Object.entries(vars)) {
    // {key: "..."} is itself translated, so a message re-renders in another language.
    const val = v && typeof v === "object" && "key" in v ? t(v.key) : v;
    s = s.replaceAll(`{${k}}`, String(val));
  }
  return s;
}

async function setLanguage(lang) {
  const res = await fetch(`/static/i18n/${lang}.json`);
  state.strings = await res.json();
  state.lang = lang;
  document.documentElement.lang = lang;
  localStorage.setItem("ferry.lang", lang);
  $("lang").value = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  document.title = t("title");
  // What is already on screen switches language too.
  if (state.lastStatus) say(...state.lastStatus);
  if (state.lastError) showError(state.lastError);
  if (state.lastResult) renderResult(...state.lastResult);
  if (state.token) {
    showWho();
    renderSemesters(state.semesters || []);
    renderImports(state.imports || []);
    renderJobs(state.jobs || []);
  }
}

// ---- status and errors in words a teacher understands -------------------------------
function say(key, vars) {
  state.lastStatus = [key, vars];
  $("status").textContent = t(key, vars);
}

function showError(err) {
  state.lastError = err;
  const box = $("alert");
  const code = err && err.code ? err.code : "NETWORK";
  const known = state.strings[`err_${code}`] ? `err_${code}` : "err_OTHER";
  box.textContent = t(known) + (err && err.message ? ` (${err.message})` : "");
  box.hidden = false;
  if (code === "UNAUTHENTICATED" && state.token) signOut(false);
}

function clearError() { state.lastError = null; $("alert").hidden = true; $("alert").textContent = ""; }

async function busy(button, work) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  clearError();
  try { return await work(); } catch (e) { showError(e); return undefined; } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// ---- API ----------------------------------------------------------------------------
async function api(path, { method = "GET", body, raw = false, headers = {} } = {}) {
  const h = { ...headers };
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  if (body !== undefined && !(body instanceof FormData)) h["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method, headers: h,
      body: body === undefined ? undefined : (body instanceof FormData ? body : JSON.stringify(body)),
    });
  } catch (e) {
    throw { code: "NETWORK", message: "" };
  }
  if (!res.ok) {
    let err = { code: res.status === 413 ? "TOO_LARGE" : "OTHER", message: "" };
    try { err = await res.json(); if (res.status === 413) err.code = "TOO_LARGE"; } catch (e) { /* not JSON */ }
    throw err;
  }
  return raw ? res : res.json();
}

// ---- sign in ------------------------------------------------------------------------
function showWho() {
  $("who").textContent = t("signedInAs", { name: state.user, role: t(`role_${state.role}`) });
}

async function signIn(ev) {
  ev.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) { showError({ code: "MISSING_LOGIN" }); return; }
  await busy($("login-btn"), async () => {
    say("signingIn");
    const r = await api("/api/v1/auth/login", { method: "POST", body: { username, password } });
    state.token = r.token; state.role = r.role; state.user = username;
    sessionStorage.setItem("ferry.session", JSON.stringify({ token: r.token, role: r.role, user: username }));
    $("password").value = "";
    await enterWorkspace();
  });
}

function signOut(announce = true) {
  state.token = null;
  sessionStorage.removeItem("ferry.session");
  for (const es of state.watchers.values()) es.close();
  state.watchers.clear();
  $("workspace").hidden = true; $("login-panel").hidden = false;
  $("who").hidden = true; $("signout").hidden = true;
  if (announce) say("signedOut");
}

async function enterWorkspace() {
  $("login-panel").hidden = true; $("workspace").hidden = false;
  $("who").hidden = false; $("signout").hidden = false;
  showWho();
  say("loading");
  await Promise.all([loadSemesters(), loadImports(), loadJobs()]);
  say("ready");
}

// ---- semester export ----------------------------------------------------------------
async function loadSemesters() {
  try {
    const r = await api("/api/v1/sessions/semesters");
    state.semesters = r.semesters || [];
  } catch (e) { state.semesters = []; showError(e); }
  renderSemesters(state.semesters);
}

function renderSemesters(list) {
  for (const [id, allowEmpty] of [["semester", false], ["job-semester", true]]) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren();
    if (allowEmpty) sel.append(new Option(t("anySemester"), ""));
    if (!list.length && !allowEmpty) {
      const o = new Option(t("noSemesters"), ""); o.disabled = true; o.selected = true; sel.append(o);
    }
    for (const s of list) {
      sel.append(new Option(t("semesterOption", { name: s.name, students: s.student_count, courses: s.course_count }), s.name));
    }
    if (keep) sel.value = keep;
  }
  $("export-btn").disabled = !list.length;
}

function filenameOf(res, fallback) {
  const cd = res.headers.get("Content-Disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(cd);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="([^"]+)"/i.exec(cd);
  return plain ? plain[1] : fallback;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url; a.download = name; document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

async function exportSemester() {
  const semester = $("semester").value;
  const format = $("bundle-format").value;
  if (!semester) { showError({ code: "NO_SEMESTER" }); return; }
  await busy($("export-btn"), async () => {
    say("exporting", { semester });
    const q = new URLSearchParams({ semester, format });
    const res = await api(`/api/v1/sessions/export?${q}`, { method: "POST", raw: true });
    const blob = await res.blob();
    const name = filenameOf(res, `session_${semester}.${format}`);
    saveBlob(blob, name);
    say("exported", { name });
  });
}

// ---- import -------------------------------------------------------------------------
function strategy() { return document.querySelector("input[name=strategy]:checked").value; }

async function runImport(dryRun) {
  const file = $("import-file").files[0];
  if (!file) { showError({ code: "NO_FILE" }); return null; }
  const form = new FormData();
  form.append("file", file, file.name);
  const q = new URLSearchParams({ merge_strategy: strategy(), dry_run: String(dryRun) });
  const r = await api(`/api/v1/sessions/import?${q}`, { method: "POST", body: form });
  return r.result;
}

async function preview() {
  await busy($("preview-btn"), async () => {
    say("previewing");
    $("import-btn").disabled = true;
    const result = await runImport(true);
    if (!result) return;
    state.preview = { file: $("import-file").files[0], strategy: strategy() };
    renderResult(result, true);
    $("import-btn").disabled = false;
    say("previewed");
  });
}

async function doImport() {
  await busy($("import-btn"), async () => {
    say("importing");
    const result = await runImport(false);
    if (!result) return;
    renderResult(result, false);
    state.preview = null;
    await loadImports();
    await loadSemesters();
    say("imported");
  });
  $("import-btn").disabled = true;
}

const COUNTS = ["created", "updated", "unchanged", "skipped", "unmatched", "deleted", "errors"];

function renderResult(result, isPreview) {
  state.lastResult = [result, isPreview];
  const box = $("import-result");
  box.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = isPreview ? t("previewTitle") : t("resultTitle");
  box.append(h);
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const k of ["entity", ...COUNTS]) {
    const th = document.createElement("th"); th.textContent = t(`col_${k}`); head.append(th);
  }
  const body = table.createTBody();
  for (const s of result.summaries || []) {
    const row = body.insertRow();
    row.insertCell().textContent = t(`entity_${s.entity}`);
    for (const k of COUNTS) row.insertCell().textContent = s[k] ?? "0";
  }
  const wrap = document.createElement("div"); wrap.className = "table-wrap"; wrap.append(table);
  box.append(wrap);
  if ((result.errors || []).length) {
    const p = document.createElement("p"); p.className = "error-text";
    p.textContent = t("recordErrors", { n: result.total_errors });
    const ul = document.createElement("ul");
    for (const e of result.errors.slice(0, 10)) {
      const li = document.createElement("li");
      li.textContent = `${t(`entity_${e.entity}`)} ${e.natural_key}${e.field ? ` (${e.field})` : ""}: ${e.reason}`;
      ul.append(li);
    }
    box.append(p, ul);
  }
  if ((result.warnings || []).length) {
    const p = document.createElement("p"); p.textContent = t("importNotes");
    const ul = document.createElement("ul"); ul.className = "import-warnings";
    for (const w of result.warnings) {
      const li = document.createElement("li");
      li.textContent = w.message + ((w.sample || []).length ? ` (${w.sample.slice(0, 3).join(", ")})` : "");
      ul.append(li);
    }
    box.append(p, ul);
  }
  if ((result.sample_changes || []).length) {
    const p = document.createElement("p"); p.textContent = t("sampleChanges");
    const ul = document.createElement("ul");
    for (const c of result.sample_changes.slice(0, 10)) {
      const li = document.createElement("li");
      const fields = (c.changes || []).map((f) => `${f.field}: ${f.old_value || "—"} → ${f.new_value || "—"}`).join("; ");
      li.textContent = `${t(`action_${c.action}`)} ${t(`entity_${c.entity}`)} ${c.natural_key}${fields ? ` (${fields})` : ""}`;
      ul.append(li);
    }
    box.append(p, ul);
  }
  box.hidden = false;
}

async function loadImports() {
  try {
    const r = await api("/api/v1/imports?page_size=20");
    state.imports = r.imports || [];
  } catch (e) {
    state.imports = [];
    if (e.code !== "UNIMPLEMENTED") showError(e);
  }
  renderImports(state.imports);
}

function when(ts) { return ts ? new Date(ts).toLocaleString(state.lang === "el" ? "el-GR" : "en-GB") : ""; }

function renderImports(list) {
  const body = $("imports-table").tBodies[0];
  body.replaceChildren();
  $("imports-empty").hidden = list.length > 0;
  for (const imp of list) {
    const row = body.insertRow();
    row.insertCell().textContent = when(imp.created_at);
    row.insertCell().textContent = (imp.options && imp.options.filename) || imp.entity || "";
    row.insertCell().textContent = t(imp.status || "IMPORT_STATUS_UNSPECIFIED");
    const total = (imp.summaries || []).reduce((n, s) => n + Number(s.created) + Number(s.updated) + Number(s.deleted), 0);
    row.insertCell().textContent = String(total);
    const cell = row.insertCell();
    if (imp.status === "IMPORT_STATUS_COMPLETED") {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t("undo");
      b.setAttribute("aria-label", t("undoImport", { when: when(imp.created_at) }));
      b.addEventListener("click", () => undo(imp, b));
      cell.append(b);
    }
  }
}

async function undo(imp, button) {
  if (!confirm(t("confirmUndo"))) return;
  await busy(button, async () => {
    say("undoing");
    await api(`/api/v1/imports/${encodeURIComponent(imp.id)}/undo`, { method: "POST", body: {} });
    await loadImports();
    await loadSemesters();
    say("undone");
  });
}

// ---- entity export jobs -------------------------------------------------------------
async function startJob(ev) {
  ev.preventDefault();
  const filters = {};
  for (const [id, key] of [["job-semester", "semester"], ["job-status", "status"], ["job-search", "search"]]) {
    const v = $(id).value.trim(); if (v) filters[key] = v;
  }
  await busy($("job-btn"), async () => {
    say("starting");
    const body = { export_type: $("job-type").value, format: $("job-format").value, filters };
    const r = await api("/api/v1/exports", { method: "POST", body });
    upsertJob(r.job);
    watch(r.job);
    say("started");
  });
}

async function loadJobs() {
  try {
    const r = await api("/api/v1/exports?page_size=20");
    state.jobs = r.jobs || [];
  } catch (e) { state.jobs = []; if (e.code !== "UNIMPLEMENTED") showError(e); }
  renderJobs(state.jobs);
  for (const j of state.jobs) if (!ended(j)) watch(j);
}

function ended(job) {
  return ["EXPORT_JOB_STATUS_COMPLETED", "EXPORT_JOB_STATUS_FAILED", "EXPORT_JOB_STATUS_CANCELLED"].includes(job.status);
}

function upsertJob(job) {
  const i = state.jobs.findIndex((j) => j.id === job.id);
  if (i >= 0) state.jobs[i] = job; else state.jobs.unshift(job);
  renderJobs(state.jobs);
}

async function watch(job) {
  if (state.watchers.has(job.id)) return;
  // EventSource cannot send an Authorization header: the gateway hands out a signed,
  // expiring URL for this job's events instead.
  let links;
  try { links = await api(`/api/v1/exports/${encodeURIComponent(job.id)}/links`); } catch (e) { showError(e); return; }
  const es = new EventSource(links.events_url);
  state.watchers.set(job.id, es);
  es.onmessage = (m) => {
    const update = JSON.parse(m.data).job;
    upsertJob(update);
    if (ended(update)) say(update.status === "EXPORT_JOB_STATUS_COMPLETED" ? "jobDone" : "jobEnded", { what: { key: update.export_type } });
  };
  const stop = () => { es.close(); state.watchers.delete(job.id); };
  es.addEventListener("end", stop);
  es.addEventListener("error", (m) => {
    stop();
    if (m.data) showError(JSON.parse(m.data));
  });
}

function size(bytes) {
  const n = Number(bytes || 0);
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1048576).toFixed(1)} MB`;
}

function renderJobs(list) {
  const body = $("jobs-table").tBodies[0];
  body.replaceChildren();
  $("jobs-empty").hidden = list.length > 0;
  for (const job of list) {
    const row = body.insertRow();
    row.dataset.jobId = job.id;
    row.insertCell().textContent = `${t(job.export_type)} (${job.format})`;
    const st = row.insertCell();
    st.textContent = t(job.status);
    if (job.status === "EXPORT_JOB_STATUS_FAILED" && job.error_message) {
      const err = document.createElement("div"); err.className = "error-text"; err.textContent = job.error_message; st.append(err);
    }
    const pc = row.insertCell();
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = job.progress_percent || 0;
    bar.setAttribute("aria-label", t("progressOf", { what: t(job.export_type) }));
    pc.append(bar, document.createTextNode(` ${job.progress_percent || 0}%`));
    row.insertCell().textContent = ended(job) ? size(job.file_size_bytes) : "";
    row.insertCell().textContent = job.duration_seconds ? `${Number(job.duration_seconds).toFixed(1)} s` : "";
    const cell = row.insertCell();
    if (job.status === "EXPORT_JOB_STATUS_COMPLETED") {
      const b = document.createElement("button");
      b.type = "button"; b.className = "download"; b.textContent = t("download");
      b.setAttribute("aria-label", t("downloadFile", { name: job.filename || job.id }));
      b.addEventListener("click", () => downloadJob(job, b));
      cell.append(b);
    } else if (!ended(job)) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t("cancel");
      b.addEventListener("click", () => busy(b, async () => {
        const r = await api(`/api/v1/exports/${encodeURIComponent(job.id)}`, { method: "DELETE" });
        upsertJob(r.job);
      }));
      cell.append(b);
    }
  }
}

async function downloadJob(job, button) {
  await busy(button, async () => {
    const links = await api(`/api/v1/exports/${encodeURIComponent(job.id)}/links`);
    const a = document.createElement("a");
    a.href = links.download_url; a.download = job.filename || "";
    document.body.append(a); a.click(); a.remove();
  });
}

// ---- start --------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(true));
  $("lang").addEventListener("change", (e) => setLanguage(e.target.value));
  $("export-btn").addEventListener("click", exportSemester);
  $("preview-btn").addEventListener("click", preview);
  $("import-btn").addEventListener("click", doImport);
  $("import-file").addEventListener("change", () => {
    $("import-btn").disabled = true; $("import-result").hidden = true; state.lastResult = null;
  });
  for (const r of document.querySelectorAll("input[name=strategy]")) {
    r.addEventListener("change", () => { $("import-btn").disabled = true; });
  }
  $("job-form").addEventListener("submit", startJob);
  const lang = localStorage.getItem("ferry.lang") || (navigator.language || "en").slice(0, 2);
  await setLanguage(lang === "el" ? "el" : "en");
  const saved = sessionStorage.getItem("ferry.session");
  if (saved) {
    Object.assign(state, JSON.parse(saved));
    await enterWorkspace();
  } else {
    say("pleaseSignIn");
  }
});
