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
  // Every request from now on asks for the chosen language (Accept-Language), also one
  // sent while its words are still loading: a click right after the choice once fetched a
  // report in the old language (tests/e2e/test_page_states.py).
  state.lang = lang;
  localStorage.setItem("ferry.lang", lang);
  $("lang").value = lang;
  const res = await fetch(`/static/i18n/${lang}.json`);
  const strings = await res.json();
  if (state.lang !== lang) return; // chosen again meanwhile: the later choice's words win
  state.strings = strings;
  document.documentElement.lang = lang;
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
    if (state.conflicts) renderConflicts(state.conflicts);
    if (state.exportLoss) renderExportLoss(state.exportLoss);
    renderJobs(state.jobs || []);
    renderNotifications(state.notifications || []);
    if (state.studentReport) renderStudentReport(state.studentReport);
    if (state.semesterReport) renderSemesterReport(state.semesterReport);
  }
}

// ---- status and errors in words a teacher understands -------------------------------
function say(key, vars) {
  state.lastStatus = [key, vars];
  $("status").textContent = t(key, vars);
}

function showError(err) {
  // A JavaScript error is a fault of the page itself, never "Ferry cannot be reached".
  if (err instanceof Error) { console.error(err); err = { code: "PAGE" }; }
  state.lastError = err;
  // The status line never contradicts the alert: what was in progress has stopped.
  state.lastStatus = null; $("status").textContent = "";
  const box = $("alert");
  const code = err && err.code ? err.code : "NETWORK";
  const known = state.strings[`err_${code}`] ? `err_${code}` : "err_OTHER";
  box.textContent = t(known) + detailOf(err);
  box.hidden = false;
  if (code === "UNAUTHENTICATED" && state.token) signOut(false);
}

// What follows the translated message in brackets. The server's own text is never shown:
// its machine reason (google.rpc.ErrorInfo, the body's `reason` and `metadata`) is worded
// here from the string tables (why_<REASON>), the field it names shown as a label. The page's
// own errors (an address typed wrong) keep what the page wrote.
function detailOf(err) {
  if (!err) return "";
  if (err.server) {
    const field = (err.metadata || {}).field || (err.details || []).map((d) => d.field).find(Boolean) || "";
    const why = reasonText(err.reason, { ...(err.metadata || {}), field });
    return why ? ` (${why})` : "";
  }
  return err.message ? ` (${err.message})` : "";
}

// A machine reason and its values in the page's words ("" when the page has none for it),
// a field it names as a label.
function reasonText(reason, metadata) {
  const meta = { ...(metadata || {}) };
  if (meta.field) meta.field = fieldLabel(String(meta.field).split(".").pop());
  const key = `why_${reason}`;
  if (reason && state.strings[key]) return t(key, meta);
  return meta.field || "";
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
  // The page's language travels with every request (files, mails and messages made for it).
  const h = { "Accept-Language": state.lang, ...headers };
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  // A platform admin's calls act for the school picked in the header (docs/tenants.md).
  if (state.token && isPlatform() && state.school) h["X-Ferry-School"] = state.school;
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
    err.server = true;
    throw err;
  }
  return raw ? res : res.json();
}

// ---- sign in ------------------------------------------------------------------------
function showWho() {
  $("who").textContent = t("signedInAs", { name: state.user, role: t(`role_${state.role}`) });
  showSchool();
}

// ---- the school ------------------------------------------------------------------------
// Everyone works in one school: a school's user sees its name; a platform admin picks the
// school each call acts for (sent as X-Ferry-School), and nothing is loaded until one is.
function isPlatform() { return state.role === "platform_admin"; }
function isAdmin() { return state.role === "admin" || isPlatform(); }

function schoolName(code) {
  const found = (state.schools || []).find((s) => s.code === code);
  return found && found.name ? found.name : code;
}

function showSchool() {
  const platform = isPlatform();
  $("school").hidden = platform || !state.school;
  $("school").textContent = state.school ? t("schoolIs", { name: schoolName(state.school) }) : "";
  $("school-picker").hidden = !platform;
  const pick = $("school-pick");
  if (!platform) return;
  pick.replaceChildren();
  const none = document.createElement("option");
  none.value = ""; none.textContent = t("schoolChoose");
  pick.append(none);
  for (const s of state.schools || []) {
    const o = document.createElement("option");
    o.value = s.code; o.textContent = s.name && s.name !== s.code ? `${s.name} (${s.code})` : s.code;
    pick.append(o);
  }
  pick.value = state.school || "";
}

async function loadSchools() {
  try {
    const r = await api("/api/v1/auth/schools");
    state.schools = r.schools || [];
  } catch (e) {
    state.schools = [];
    if (isPlatform()) throw e;
  }
  showSchool();
}

function saveSession() {
  sessionStorage.setItem("ferry.session", JSON.stringify({ token: state.token, role: state.role,
    user: state.user, email: state.email, school: state.school || "" }));
}

async function pickSchool() {
  state.school = $("school-pick").value;
  saveSession();
  for (const es of state.watchers.values()) es.close();
  state.watchers.clear();
  await enterWorkspace();
}

async function signIn(ev) {
  ev.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) { showError({ code: "MISSING_LOGIN" }); return; }
  await busy($("login-btn"), async () => {
    say("signingIn");
    let r;
    try {
      r = await api("/api/v1/auth/login", { method: "POST", body: { username, password } });
    } catch (e) {
      // The server's own words are not shown: a refused login is one message, in the page's language.
      throw e && e.code === "UNAUTHENTICATED" ? { code: "BAD_LOGIN" } : e;
    }
    state.token = r.token; state.role = r.role; state.user = username; state.email = r.email || "";
    // A school's user works in their own school; a platform admin picks one first.
    state.school = r.role === "platform_admin" ? "" : (r.school || "");
    saveSession();
    $("password").value = "";
    await enterWorkspace();
  });
}

function signOut(announce = true) {
  state.token = null; state.email = ""; state.school = ""; state.schools = [];
  clearTimeout(state.refreshTimer);
  sessionStorage.removeItem("ferry.session");
  for (const es of state.watchers.values()) es.close();
  state.watchers.clear();
  $("workspace").hidden = true; $("login-panel").hidden = false;
  $("who").hidden = true; $("signout").hidden = true;
  $("school").hidden = true; $("school-picker").hidden = true;
  if (announce) say("signedOut");
}

async function enterWorkspace() {
  $("login-panel").hidden = true; $("workspace").hidden = false;
  $("who").hidden = false; $("signout").hidden = false;
  showWho();
  say("loading");
  try { await loadSchools(); } catch (e) { showError(e); return; }
  if (isPlatform() && !state.school) {
    $("workspace").hidden = true; // nothing to show before a school is picked
    clearTimeout(state.refreshTimer);
    say("schoolPickFirst");
    return;
  }
  const admin = isAdmin();
  $("notify-panel").hidden = !admin;
  await Promise.all([loadSemesters(), loadImports(), loadJobs(), loadChannels(), ...(admin ? [loadNotifications()] : [])]);
  if (!state.lastError) say("ready"); // "Ready." under an alert would contradict it
  scheduleRefresh(REFRESH_MS);
}

// ---- lists refresh by themselves -------------------------------------------------------
// Imports, jobs and notifications made elsewhere (another teacher, a schedule, the CLI)
// appear without a click: every REFRESH_MS while the page is visible, backing off (doubling,
// at most REFRESH_MAX_MS) while Ferry cannot be reached, quietly: a failed background
// refresh never raises an alert over what the user is doing.
const REFRESH_MS = window.FERRY_REFRESH_MS || 15000;
const REFRESH_MAX_MS = 120000;

function scheduleRefresh(delay) {
  clearTimeout(state.refreshTimer);
  if (!state.token) return;
  state.refreshTimer = setTimeout(async () => {
    if (!state.token) return;
    if (document.hidden) { scheduleRefresh(delay); return; }
    let ok = true;
    try { await refreshLists(); } catch (e) { ok = false; }
    scheduleRefresh(ok ? REFRESH_MS : Math.min(delay * 2, REFRESH_MAX_MS));
  }, delay);
}

async function refreshLists() {
  const [imports, jobs] = await Promise.all([
    api("/api/v1/imports?page_size=20"), api("/api/v1/exports?page_size=20"),
  ]);
  state.imports = imports.imports || [];
  renderImports(state.imports);
  state.jobs = jobs.jobs || [];
  renderJobs(state.jobs);
  for (const j of state.jobs) if (!ended(j)) watch(j);
  if (isAdmin()) {
    const q = new URLSearchParams({ page_size: "50" });
    if ($("notify-status").value) q.set("status", $("notify-status").value);
    const n = await api(`/api/v1/notifications?${q}`);
    state.notifications = n.notifications || [];
    renderNotifications(state.notifications);
  }
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
  const lists = [["semester", false], ["job-semester", true], ["sr-semester", true],
    ["sem-semester", false], ["cls-semester", false]];
  for (const [id, allowEmpty] of lists) {
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
  for (const id of ["sem-show-btn", "sem-pdf-btn", "cls-load-btn"]) $(id).disabled = !list.length;
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
    $("oneroster-export-loss").hidden = true; state.exportLoss = null;
    if (format === "oneroster") await loadExportLoss(semester);
    say("exported", { name });
  });
}

// What a OneRoster export leaves out, said beside the export box when it is chosen; the
// counts follow each OneRoster download (loadExportLoss).
function oneRosterExportNote() {
  $("oneroster-export-note").hidden = $("bundle-format").value !== "oneroster";
}

// ---- import -------------------------------------------------------------------------
function strategy() { return document.querySelector("input[name=strategy]:checked").value; }

async function runImport(dryRun) {
  const file = $("import-file").files[0];
  if (!file) { showError({ code: "NO_FILE" }); return null; }
  const form = new FormData();
  form.append("file", file, file.name);
  const q = new URLSearchParams({ merge_strategy: strategy(), dry_run: String(dryRun) });
  importFormat(q);
  const digest = dryRun ? "" : previewedPlan(file);
  if (digest) q.set("plan_digest", digest);
  const r = await api(`/api/v1/sessions/import?${q}`, { method: "POST", body: form });
  return r.result;
}

// The import box's format: empty lets the server tell it by name or content (a
// OneRoster zip by its manifest.csv).
function importFormat(q) {
  const format = $("import-format").value;
  if (format) q.set("bundle_format", format);
}

async function preview() {
  await busy($("preview-btn"), async () => {
    say("previewing");
    $("import-btn").disabled = true;
    const result = await runImport(true);
    if (!result) return;
    state.preview = { file: $("import-file").files[0], strategy: strategy(), digest: result.plan_digest || "" };
    renderResult(result, true);
    $("import-btn").disabled = false;
    say("previewed");
  });
}

async function doImport() {
  await busy($("import-btn"), async () => {
    say("importing");
    const planned = Boolean(previewedPlan($("import-file").files[0]));
    let result;
    try {
      result = await runImport(false);
    } catch (e) {
      if (planned && e.code === "FAILED_PRECONDITION") {
        // A plan waiting for an admin stays previewed; one whose data moved does not.
        if (/approv/.test(e.message || "")) note(t("planAwaitsApproval"));
        else if (e.reason !== "CHANGE_LIMIT") planChanged();
      }
      throw e;
    }
    if (!result) return;
    renderResult(result, false);
    if (planned) note(t("planApplied"));
    state.preview = null;
    await loadImports();
    await loadSemesters();
    say("imported");
  });
  $("import-btn").disabled = true;
}

// A record's field as a person reads it ("Last name", not last_name).
function fieldLabel(name) {
  return state.strings[`field_${name}`] ?? String(name).replace(/_/g, " ");
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
  const counts = [...COUNTS, ...mergeCounts(result)];
  for (const k of ["entity", ...counts]) {
    const th = document.createElement("th"); th.textContent = t(`col_${k}`); head.append(th);
  }
  const body = table.createTBody();
  for (const s of result.summaries || []) {
    const row = body.insertRow();
    row.insertCell().textContent = t(`entity_${s.entity}`);
    for (const k of counts) row.insertCell().textContent = s[k] ?? "0";
  }
  const wrap = document.createElement("div"); wrap.className = "table-wrap"; wrap.append(table);
  box.append(wrap);
  if ((result.errors || []).length) {
    const p = document.createElement("p"); p.className = "error-text";
    p.textContent = t("recordErrors", { n: result.total_errors });
    const ul = document.createElement("ul");
    for (const e of result.errors.slice(0, 10)) {
      const li = document.createElement("li");
      li.textContent = `${t(`entity_${e.entity}`)} ${e.natural_key}${e.field ? ` (${fieldLabel(e.field)})` : ""}: ${e.reason}`;
      ul.append(li);
    }
    box.append(p, ul);
  }
  const notes = (result.warnings || []).filter((w) => w.kind !== LOSS_KIND);
  if (notes.length) {
    const p = document.createElement("p"); p.textContent = t("importNotes");
    const ul = document.createElement("ul"); ul.className = "import-warnings";
    for (const w of notes) {
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
      const fields = (c.changes || []).map((f) => `${fieldLabel(f.field)}: ${f.old_value || "—"} → ${f.new_value || "—"}`).join("; ");
      li.textContent = `${t(`action_${c.action}`)} ${t(`entity_${c.entity}`)} ${c.natural_key}${fields ? ` (${fields})` : ""}`;
      ul.append(li);
    }
    box.append(p, ul);
  }
  renderLoss(result, box);
  renderLimits(result, box);
  if (isPreview) box.append(emptyCellRule());
  box.hidden = false;
}

// The loss report (a OneRoster import): what did not cross, per table and field, with a
// count and a sample, under its own heading.
const LOSS_KIND = "not_imported";
function renderLoss(result, box) {
  const lost = (result.warnings || []).filter((w) => w.kind === LOSS_KIND);
  if (!lost.length) return;
  const p = document.createElement("p"); p.textContent = t("lossReport");
  const ul = document.createElement("ul"); ul.id = "loss-report";
  for (const w of lost) {
    const li = document.createElement("li");
    li.textContent = lossLine(w, "lossImported");
    ul.append(li);
  }
  box.append(p, ul);
}

// One line of a loss report in the page's words: what (table and field), how many, why
// (its machine reason, why_<REASON>), and a few of the records.
function lossLine(loss, key) {
  const entity = t(`entity_${loss.entity}`);
  const what = loss.field ? `${entity} · ${fieldLabel(loss.field)}` : entity;
  const why = loss.reason && state.strings[`why_${loss.reason}`] ? t(`why_${loss.reason}`) : "";
  const sample = (loss.sample || []).slice(0, 3).join(", ");
  return t(key, { what, n: loss.count || "0" }) + (why ? ` — ${why}` : "") + (sample ? ` (${sample})` : "");
}

// The loss report of a OneRoster export, asked after the download (DownloadSession
// carries only the file), shown under the export box.
async function loadExportLoss(semester) {
  const box = $("oneroster-export-loss");
  box.replaceChildren(); box.hidden = false;
  const p = document.createElement("p"); p.textContent = t("lossChecking"); box.append(p);
  const q = new URLSearchParams({ semester });
  const r = await api(`/api/v1/sessions/oneroster-loss?${q}`, { method: "POST" });
  state.exportLoss = r.losses || [];
  renderExportLoss(state.exportLoss);
}

function renderExportLoss(losses) {
  const box = $("oneroster-export-loss");
  box.replaceChildren();
  const p = document.createElement("p");
  p.textContent = t(losses.length ? "lossExportTitle" : "lossExportNone");
  box.append(p);
  if (losses.length) {
    const ul = document.createElement("ul"); ul.id = "export-loss-report";
    for (const loss of losses) {
      const li = document.createElement("li");
      li.textContent = lossLine(loss, "lossExported");
      ul.append(li);
    }
    box.append(ul);
  }
  box.hidden = false;
}

// ---- plans and change limits (issue 29) ----------------------------------------------
// Import after Preview applies exactly the previewed plan (its digest): the server refuses
// it, naming what changed, if the data moved in between; the page then asks for a new
// preview. A different file or strategy is a new import, with no plan.
// Columns of the three-way merge and renames, shown only when some entity has them.
const MERGE_COUNTS = ["kept_local", "conflicts", "renamed"];
function mergeCounts(result) {
  return MERGE_COUNTS.filter((k) => (result.summaries || []).some((s) => Number(s[k] || 0) > 0));
}

function previewedPlan(file) {
  const p = state.preview;
  return p && p.digest && p.file === file && p.strategy === strategy() ? p.digest : "";
}

function planChanged() {
  state.preview = null;
  $("import-btn").disabled = true;
  note(t("planChanged"));
}

function note(text) {
  const box = $("import-result");
  const p = document.createElement("p"); p.className = "plan-note"; p.textContent = text;
  box.append(p); box.hidden = false;
}

const LIMIT_VERBS = { create: "limitVerb_create", update: "limitVerb_update", delete: "limitVerb_delete" };
function renderLimits(result, box) {
  const limits = result.limits || [];
  if (!limits.length) return;
  const p = document.createElement("p"); p.textContent = t("changeLimits");
  const ul = document.createElement("ul"); ul.className = "change-limits";
  for (const lim of limits) {
    const li = document.createElement("li");
    li.textContent = limitLine(lim, result.semester);
    if (lim.exceeded) li.className = "error-text";
    ul.append(li);
  }
  box.append(p, ul);
}

// A change limit measured against an import, in the page's words (never the server's).
function limitLine(lim, semester) {
  const base = Number(lim.base || 0), count = Number(lim.count || 0), max = Number(lim.max_percent || 0);
  const allowed = Math.floor(base * max / 100);
  const where = lim.scope === "semester" && semester ? t("limitWhereSemester", { semester }) : t("limitWhereAll");
  const percent = base ? (100 * count / base).toFixed(1) : "0";
  return t(lim.exceeded ? "limitOver" : "limitLine", {
    entity: t(`entity_${lim.entity}`), verb: t(LIMIT_VERBS[lim.action] || lim.action), max: String(max),
    where, allowed, base, count, percent, over: count - allowed,
  });
}

// The empty-cell rule (docs/merging.md), stated beside every preview.
function emptyCellRule() {
  const p = document.createElement("p");
  p.className = "hint"; p.id = "empty-cell-rule"; p.textContent = t("emptyCellRule");
  return p;
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
  await loadConflicts();
}

// ---- conflicts left for review (imports.conflicts: review; issue 29) ---------------------
// A field changed both here and in an imported file keeps the value here until a person
// chooses; operators and admins choose per conflict or for the whole list, each choice an
// import of its own (listed in the history, undoable).
const CONFLICT_PAGE = 200;
async function loadConflicts() {
  try {
    const r = await api(`/api/v1/import-conflicts?page_size=${CONFLICT_PAGE}`);
    state.conflicts = { items: r.conflicts || [], total: Number(r.total || 0) };
  } catch (e) {
    state.conflicts = { items: [], total: 0 };
    if (e.code !== "UNIMPLEMENTED") showError(e);
  }
  renderConflicts(state.conflicts);
}

function canResolve() { return state.role === "operator" || isAdmin(); }

function renderConflicts(list) {
  const box = $("conflicts");
  const body = $("conflicts-table").tBodies[0];
  body.replaceChildren();
  box.hidden = !list.items.length;
  $("conflicts-count").textContent = list.items.length
    ? t(list.total > list.items.length ? "conflictsSome" : "conflictsCount", { n: list.total, shown: list.items.length })
    : "";
  $("conflicts-all").hidden = !canResolve();
  for (const c of list.items) {
    const row = body.insertRow();
    row.dataset.conflict = c.id;
    row.insertCell().textContent = t(`entity_${c.entity}`);
    row.insertCell().textContent = c.natural_key;
    row.insertCell().textContent = fieldLabel(c.field);
    row.insertCell().textContent = c.local_value || "—";
    row.insertCell().textContent = c.source_value || "—";
    const cell = row.insertCell();
    if (!canResolve()) continue;
    const choices = [["conflictKeepLocal", "conflictKeepLocalFor", "local"],
      ["conflictTakeSource", "conflictTakeSourceFor", "source"]];
    for (const [key, label, choice] of choices) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t(key); b.className = `conflict-${choice}`;
      b.setAttribute("aria-label", t(label, { record: c.natural_key, field: fieldLabel(c.field) }));
      b.addEventListener("click", () => resolveConflicts([c], choice, b));
      cell.append(b);
    }
  }
}

async function resolveConflicts(items, choice, button) {
  if (!items.length) return;
  await busy(button, async () => {
    say("conflictsResolving");
    const decisions = items.map((c) => ({
      conflict_id: c.id, choice: choice === "local" ? "CONFLICT_CHOICE_LOCAL" : "CONFLICT_CHOICE_SOURCE",
    }));
    try {
      await api("/api/v1/import-conflicts/resolve", { method: "POST", body: { decisions } });
    } finally {
      await loadImports();  // the resolution is in the history; the list is current again
    }
    await loadSemesters();
    say(choice === "local" ? "conflictsKeptLocal" : "conflictsTookSource", { n: items.length });
  });
}

function when(ts) { return ts ? new Date(ts).toLocaleString(state.lang === "el" ? "el-GR" : "en-GB") : ""; }

function renderImports(list) {
  const body = $("imports-table").tBodies[0];
  body.replaceChildren();
  $("imports-empty").hidden = list.length > 0;
  for (const imp of list) {
    const row = body.insertRow();
    row.insertCell().textContent = when(imp.created_at);
    row.insertCell().textContent = importFile(imp);
    row.insertCell().textContent = imp.requested_by || "";
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
    planCell(imp, cell);
  }
}

// A plan awaiting an admin's approval (imports.approval: required): its state, and for
// admins Approve / Reject (issue 29).
const PLAN_STATES = { pending: "plan_pending", approved: "plan_approved", rejected: "plan_rejected" };
function planCell(imp, cell) {
  const approval = imp.approval || {};
  if (!approval.state) return;
  const span = document.createElement("span");
  span.className = "plan-state";
  span.textContent = t(PLAN_STATES[approval.state] || "plan_pending");
  cell.append(span);
  if (approval.state !== "pending" || !isAdmin()) return;
  for (const [key, path] of [["approvePlan", "approve"], ["rejectPlan", "reject"]]) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = t(key);
    b.addEventListener("click", () => decidePlan(imp, path, b));
    cell.append(b);
  }
}

async function decidePlan(imp, path, button) {
  let reason = "";
  if (path === "reject") {
    reason = prompt(t("rejectWhy")) || "";
    if (!reason.trim()) return;
  }
  await busy(button, async () => {
    await api(`/api/v1/imports/${encodeURIComponent(imp.id)}/${path}`, { method: "POST", body: { reason } });
    await loadImports();
    say(path === "approve" ? "planApprovedSay" : "planRejectedSay");
  });
}

function importFile(imp) { return (imp.options && imp.options.filename) || imp.entity || ""; }

// An import as the history table shows it: when, which file, who.
function importInWords(imp) {
  return [when(imp.created_at), importFile(imp), imp.requested_by].filter(Boolean).join(" · ");
}

async function undo(imp, button) {
  if (!confirm(t("confirmUndo"))) return;
  await busy(button, async () => {
    say("undoing");
    try {
      await api(`/api/v1/imports/${encodeURIComponent(imp.id)}/undo`, { method: "POST", body: {} });
    } catch (e) {
      if (!e || e.code !== "FAILED_PRECONDITION") throw e;
      // The refusal names later imports by id, which the history never shows: name them
      // as the history does, and never show the server's text.
      const later = (state.imports || []).filter((i) => i.id !== imp.id && (e.message || "").includes(i.id));
      throw later.length
        ? { code: "UNDO_LATER", message: later.map(importInWords).join("; ") }
        : { code: "UNDO_CHANGED" };
    }
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
  const notify = recipients();
  if (notify === null) return;
  await busy($("job-btn"), async () => {
    if (state.newOwnAddress && isAdmin()) {
      // An admin's address is saved on the account (users.email), where mails look first.
      const email = state.newOwnAddress;
      await api(`/api/v1/auth/users/${encodeURIComponent(state.user)}/email`, { method: "POST", body: { email } });
      state.email = email;
      saveSession();
    }
    state.newOwnAddress = null;
    say("starting");
    const body = { export_type: $("job-type").value, format: $("job-format").value, filters, notify };
    const r = await api("/api/v1/exports", { method: "POST", body });
    upsertJob(r.job);
    watch(r.job);
    if (!notify.length) say("started");
    else if (state.mailKinds && !state.mailKinds.length) say("startedLogged", { who: notify.join(", ") });
    else say("startedNotify", { who: notify.join(", ") });
  });
}

// ---- notifications ------------------------------------------------------------------
const ADDRESS = /^[^\s@<>,]+@[^\s@<>,]+$/;

// The signed-in user's mail address (users.email, from the login), else a sign-in name
// that is itself an address, else "" (the page asks for one).
function ownAddress() {
  if (state.email && ADDRESS.test(state.email)) return state.email;
  if (ADDRESS.test(state.user || "")) return state.user;
  const kept = localStorage.getItem(`ferry.email.${state.user}`) || "";
  return ADDRESS.test(kept) ? kept : "";
}

// The addresses told when the job ends, or null (with an error shown) when one is bad.
function recipients() {
  const out = [];
  if ($("job-notify-me").checked) {
    if (!ownAddress()) {
      // Asked for in place, once: the address typed here is kept for this sign-in name.
      const typed = $("job-my-email").value.trim();
      $("job-notify-me-hint").hidden = false;
      if (!ADDRESS.test(typed)) { showError({ code: "NEED_ADDRESS" }); $("job-my-email").focus(); return null; }
      localStorage.setItem(`ferry.email.${state.user}`, typed);
      state.newOwnAddress = typed;
      $("job-notify-me-hint").hidden = true;
    }
    out.push(ownAddress());
  }
  for (const part of $("job-notify").value.split(/[,;\s]+/)) {
    const a = part.trim();
    if (!a) continue;
    if (!ADDRESS.test(a)) { showError({ code: "BAD_ADDRESS", message: a }); $("job-notify").focus(); return null; }
    if (!out.includes(a)) out.push(a);
  }
  return out;
}

// Whether anything can mail: with only the log channel nothing is sent, and the page
// says "logged (no mail channel)" instead of promising a mail.
async function loadChannels() {
  try {
    const r = await api("/api/v1/notifications/channels");
    state.mailKinds = (r.channels || []).filter((c) => c.kind !== "log").map((c) => c.name);
  } catch (e) { state.mailKinds = null; }
}

function onlyLogged(n) {
  const chans = n.channels || [];
  return chans.length > 0 && chans.every((c) => c === "log");
}

async function loadNotifications() {
  const q = new URLSearchParams({ page_size: "50" });
  const status = $("notify-status").value;
  if (status) q.set("status", status);
  try {
    const r = await api(`/api/v1/notifications?${q}`);
    state.notifications = r.notifications || [];
  } catch (e) { state.notifications = []; if (e.code !== "UNIMPLEMENTED") showError(e); }
  renderNotifications(state.notifications);
}

function renderNotifications(list) {
  const body = $("notify-table").tBodies[0];
  body.replaceChildren();
  $("notify-empty").hidden = list.length > 0;
  for (const n of list) {
    const row = body.insertRow();
    row.dataset.notificationId = n.id;
    row.insertCell().textContent = when(n.created_at);
    row.insertCell().textContent = n.subject || "";
    row.insertCell().textContent = (n.recipients || []).join(", ");
    row.insertCell().textContent = n.status === "NOTIFICATION_STATUS_SENT" && onlyLogged(n)
      ? t("loggedNoMail") : t(n.status || "NOTIFICATION_STATUS_UNSPECIFIED");
    row.insertCell().textContent = String(n.attempts || 0);
    const err = row.insertCell(); err.className = "error-text"; err.textContent = n.last_error || "";
    const cell = row.insertCell();
    if (["NOTIFICATION_STATUS_FAILED", "NOTIFICATION_STATUS_DEAD"].includes(n.status)) {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = t("retry");
      b.setAttribute("aria-label", t("retryNotification", { subject: n.subject || n.id }));
      b.addEventListener("click", () => busy(b, async () => {
        await api(`/api/v1/notifications/${encodeURIComponent(n.id)}/retry`, { method: "POST", body: {} });
        say("retried");
        await loadNotifications();
      }));
      cell.append(b);
    }
  }
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
    if (m.data) showError({ ...JSON.parse(m.data), server: true });  // its reason, in the page's words
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
    row.insertCell().textContent = when(job.created_at);
    const what = row.insertCell();
    what.textContent = `${t(job.export_type)} (${job.format})`;
    const params = jobParams(job);
    if (params) { const d = document.createElement("div"); d.className = "hint"; d.textContent = params; what.append(d); }
    const st = row.insertCell();
    st.textContent = t(job.status);
    if (job.status === "EXPORT_JOB_STATUS_FAILED") {
      // Why, in the page's words from the job's machine reason; never the server's English.
      const reason = job.error_reason || "";
      const why = reasonText(reason, job.error_metadata)
        || (state.strings[`err_${reason}`] ? t(`err_${reason}`) : t("err_OTHER"));
      const err = document.createElement("div"); err.className = "error-text"; err.textContent = why; st.append(err);
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

// A job's filters in words: "Semester: 2026-fall · Status: Active".
function jobParams(job) {
  const f = job.filters || {};
  const out = [];
  if (f.semester) out.push(`${t("semester")}: ${f.semester}`);
  if (f.status) out.push(`${t("status")}: ${t(`st_${f.status}`)}`);
  if (f.search) out.push(`${t("searchLabel")}: ${f.search}`);
  return out.join(" · ");
}

async function downloadJob(job, button) {
  await busy(button, async () => {
    const links = await api(`/api/v1/exports/${encodeURIComponent(job.id)}/links`);
    const a = document.createElement("a");
    a.href = links.download_url; a.download = job.filename || "";
    document.body.append(a); a.click(); a.remove();
  });
}

// ---- reports: a student, a semester, a class -------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}
function tip(parent, el, text) { el.append(svg("title", {}, text)); parent.append(el); return el; }
// Numbers as the page's language writes them (69,97 in Greek, 69.97 in English).
function num(v, digits = 2) {
  return new Intl.NumberFormat(state.lang === "el" ? "el-GR" : "en-GB", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(Number(v || 0));
}
const pct = (v) => num(v, 2);

// A report's sections may be missing (proto3 JSON leaves out an unset message, and an
// empty report has nothing in them): every section the page reads gets a default here.
function studentDefaults(r) {
  const att = r.attendance || {};
  const perf = r.performance || {};
  return {
    ...r,
    courses: (r.courses || []).map((c) => ({ ...c, attendance: c.attendance || { total: 0, rate: 0, counts: [] } })),
    highlights: r.highlights || [],
    attendance: { total: att.total || 0, rate: att.rate || 0, counts: att.counts || [] },
    performance: { average: perf.average || 0, trend: perf.trend || "", weekly: perf.weekly || [], count: perf.count || 0 },
  };
}

// A new student or semester replaces what was on screen before anything is fetched, so a
// failed or empty report never sits under the previous one's charts and courses.
function clearStudentReport() {
  state.studentReport = null;
  $("sr-result").hidden = true;
  for (const id of ["sr-name", "sr-note"]) $(id).textContent = "";
  $("sr-summary").replaceChildren();
  $("sr-courses").tBodies[0].replaceChildren();
  for (const id of ["sr-chart-results", "sr-chart-attendance", "sr-chart-trend"]) $(id).replaceChildren();
  for (const id of ["sr-data-results", "sr-data-attendance", "sr-data-trend"]) {
    $(id).tHead.replaceChildren(); $(id).tBodies[0].replaceChildren();
  }
  $("sr-pdf-btn").disabled = $("sr-csv-btn").disabled = true;
}

function clearSemesterReport() {
  state.semesterReport = null;
  $("sem-result").hidden = true;
  $("sem-summary").textContent = "";
  $("sem-risk").tBodies[0].replaceChildren();
}

async function findStudents(ev) {
  ev.preventDefault();
  const query = $("sr-query").value.trim();
  if (!query) { showError({ code: "NO_STUDENT" }); return; }
  await busy($("sr-find-btn"), async () => {
    say("searching");
    const r = await api(`/api/v1/reports/students?${new URLSearchParams({ query })}`);
    const list = r.students || [];
    const ul = $("sr-matches");
    ul.replaceChildren();
    for (const s of list) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button"; b.textContent = `${s.student_id} · ${s.first_name} ${s.last_name}`;
      b.addEventListener("click", () => openStudent(s.student_id, b));
      li.append(b); ul.append(li);
    }
    ul.hidden = list.length === 0;
    if (list.length === 1) await openStudent(list[0].student_id, null);
    else say(list.length ? "studentsFound" : "noStudents", { n: list.length });
  });
}

function reportRequest(studentId) {
  // The report's words, numbers and file come in the page's language.
  const body = { student_id: studentId, language: state.lang };
  const semester = $("sr-semester").value;
  if (semester) body.semester = semester;
  return body;
}

async function openStudent(studentId, button) {
  const work = async () => {
    clearStudentReport();
    say("loadingReport");
    const r = await api("/api/v1/reports/student-performance", { method: "POST", body: reportRequest(studentId) });
    state.studentReport = studentDefaults(r.report || {});
    renderStudentReport(state.studentReport);
    say(state.studentReport.empty ? "reportEmpty" : "reportReady");
  };
  if (button) await busy(button, work); else await work();
}

function renderStudentReport(r) {
  $("sr-result").hidden = false;
  $("sr-name").textContent = `${r.first_name} ${r.last_name} (${r.student_id})`;
  $("sr-note").textContent = r.empty ? t("emptyReport") : (r.first_day ? t("reportRange", { from: r.first_day, to: r.last_day }) : "");
  const dl = $("sr-summary");
  dl.replaceChildren();
  const rows = [
    ["overall", `${pct(r.overall_percent)}%`], ["gpa", num(r.gpa)],
    ["credits", t("creditsOf", { earned: r.credits_earned || 0, attempted: r.credits_attempted || 0 })],
    ["attendance", `${pct(r.attendance.rate)}% (${t("daysN", { n: r.attendance.total })})`],
    ["performance", `${num(r.performance.average)} ${r.performance.trend ? `(${t(`trend_${r.performance.trend}`)})` : ""}`],
  ];
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = t(`sum_${k}`);
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.key = k;
    dl.append(dt, dd);
  }
  const body = $("sr-courses").tBodies[0];
  body.replaceChildren();
  for (const c of r.courses) {
    const row = body.insertRow();
    row.insertCell().textContent = `${c.course_code} ${c.title}`;
    row.insertCell().textContent = c.teacher;
    const cells = [c.graded ? pct(c.weighted_percent) : "–", c.letter || "–",
      c.has_class_average ? pct(c.class_average) : "–", Number(c.attendance.total) ? pct(c.attendance.rate) : "–"];
    cells.forEach((v, i) => { const td = row.insertCell(); td.textContent = v; if (i !== 1) td.className = "num"; });
  }
  chartResults(r.courses.filter((c) => c.graded));
  chartAttendance(r.attendance.counts || []);
  chartTrend(r.performance.weekly || []);
  $("sr-pdf-btn").disabled = $("sr-csv-btn").disabled = r.empty;
}

// Every chart has its numbers as a table too (screen readers, printing, copying).
function dataTable(id, headers, rows) {
  const table = $(id);
  const head = table.tHead; head.replaceChildren();
  const hr = head.insertRow();
  headers.forEach((h, i) => { const th = document.createElement("th"); th.textContent = h; if (i) th.className = "num"; hr.append(th); });
  const body = table.tBodies[0]; body.replaceChildren();
  for (const r of rows) {
    const row = body.insertRow();
    r.forEach((v, i) => { const td = row.insertCell(); td.textContent = v; if (i) td.className = "num"; });
  }
}

function chartResults(courses) {
  dataTable("sr-data-results", [t("course"), t("resultPct"), t("classAvg")],
    courses.map((c) => [c.course_code, pct(c.weighted_percent), c.has_class_average ? pct(c.class_average) : "–"]));
  const el = $("sr-chart-results");
  el.replaceChildren();
  const w = 360, h = 170, left = 30, bottom = 20, top = 8;
  el.setAttribute("viewBox", `0 0 ${w} ${h}`);
  el.setAttribute("aria-label", t("chartResults"));
  const y = (v) => top + (h - top - bottom) * (1 - v / 100);
  for (const v of [0, 50, 100]) {
    el.append(svg("line", { x1: left, x2: w, y1: y(v), y2: y(v), class: "axis" }));
    el.append(svg("text", { x: 2, y: y(v) + 4 }, String(v)));
  }
  const slot = (w - left) / Math.max(1, courses.length);
  courses.forEach((c, i) => {
    const x = left + i * slot + slot * 0.15, bw = slot * 0.33;
    tip(el, svg("rect", { x, y: y(c.weighted_percent), width: bw, height: y(0) - y(c.weighted_percent), class: "bar-student" }),
      `${c.course_code}: ${pct(c.weighted_percent)}%`);
    if (c.has_class_average) {
      tip(el, svg("rect", { x: x + bw, y: y(c.class_average), width: bw, height: y(0) - y(c.class_average), class: "bar-class" }),
        `${t("classAvg")}: ${pct(c.class_average)}%`);
    }
    el.append(svg("text", { x: x, y: h - 5 }, c.course_code));
  });
}

function chartAttendance(counts) {
  dataTable("sr-data-attendance", [t("attendance"), t("days")],
    counts.map((c) => [t(`att_${c.status}`), num(c.count, 0)]));
  const el = $("sr-chart-attendance");
  el.replaceChildren();
  const w = 360, h = 170;
  // Room for the longest status label in this language (about 6.5 px a letter at 11 px).
  const left = Math.max(70, 10 + 6.5 * Math.max(0, ...counts.map((c) => t(`att_${c.status}`).length)));
  el.setAttribute("viewBox", `0 0 ${w} ${h}`);
  el.setAttribute("aria-label", t("chartAttendance"));
  const max = Math.max(1, ...counts.map((c) => Number(c.count)));
  const rowH = Math.min(34, (h - 10) / Math.max(1, counts.length));
  counts.forEach((c, i) => {
    const yy = 5 + i * rowH;
    const bw = (w - left - 40) * Number(c.count) / max;
    el.append(svg("text", { x: 2, y: yy + rowH / 2 + 4 }, t(`att_${c.status}`)));
    el.append(svg("rect", { x: left, y: yy + 3, width: bw, height: rowH - 8, class: "bar-student" }));
    el.append(svg("text", { x: left + bw + 4, y: yy + rowH / 2 + 4 }, String(c.count)));
  });
}

function chartTrend(weekly) {
  dataTable("sr-data-trend", [t("week"), t("average")], weekly.map((p) => [p.week, num(p.average)]));
  const el = $("sr-chart-trend");
  el.replaceChildren();
  const w = 360, h = 170, left = 24, pad = 12;
  el.setAttribute("viewBox", `0 0 ${w} ${h}`);
  el.setAttribute("aria-label", t("chartTrend"));
  const max = Math.max(5, ...weekly.map((p) => p.average));
  const x = (i) => left + pad + (w - left - 2 * pad) * (weekly.length < 2 ? 0.5 : i / (weekly.length - 1));
  const y = (v) => pad + (h - 2 * pad - 14) * (1 - v / max);
  el.append(svg("line", { x1: left, x2: w, y1: y(0), y2: y(0), class: "axis" }));
  el.append(svg("text", { x: 2, y: y(max) + 4 }, String(max)));
  el.append(svg("text", { x: 2, y: y(0) + 4 }, "0"));
  if (weekly.length) {
    el.append(svg("polyline", { points: weekly.map((p, i) => `${x(i)},${y(p.average)}`).join(" "), class: "trend-line" }));
    weekly.forEach((p, i) => {
      tip(el, svg("circle", { cx: x(i), cy: y(p.average), r: 3, class: "bar-student" }),
        `${p.week}: ${num(p.average)}`);
    });
    el.append(svg("text", { x: left, y: h - 3 }, weekly[0].week));
    el.append(svg("text", { x: w - 70, y: h - 3 }, weekly[weekly.length - 1].week));
  }
}

async function downloadStudent(format, button) {
  const r = state.studentReport;
  if (!r) return;
  await busy(button, async () => {
    say("preparingFile");
    const q = new URLSearchParams({ format });
    const res = await api(`/api/v1/reports/student-performance/download?${q}`, { method: "POST", body: reportRequest(r.student_id), raw: true });
    const name = filenameOf(res, `${r.student_id}_performance_${state.lang}.${format}`);
    saveBlob(await res.blob(), name);
    say("exported", { name });
  });
}

async function showSemester() {
  const semester = $("sem-semester").value;
  if (!semester) { showError({ code: "NO_SEMESTER" }); return; }
  await busy($("sem-show-btn"), async () => {
    clearSemesterReport();
    say("loadingReport");
    const r = await api(`/api/v1/reports/semesters/${encodeURIComponent(semester)}?${new URLSearchParams({ language: state.lang })}`);
    const rep = r.report || {};
    state.semesterReport = { ...rep, courses: rep.courses || [], at_risk: rep.at_risk || [] };
    renderSemesterReport(state.semesterReport);
    say("reportReady");
  });
}

function renderSemesterReport(r) {
  $("sem-result").hidden = false;
  $("sem-summary").textContent = t("semesterSummary", {
    semester: r.semester, courses: r.courses.length, students: r.student_count,
    average: pct(r.average), attendance: pct(r.attendance_rate),
  });
  const body = $("sem-risk").tBodies[0];
  body.replaceChildren();
  for (const a of r.at_risk || []) {
    const row = body.insertRow();
    row.insertCell().textContent = `${a.student_id} ${a.name}`;
    const o = row.insertCell(); o.className = "num"; o.textContent = a.graded ? pct(a.overall_percent) : "–";
    const at = row.insertCell(); at.className = "num"; at.textContent = pct(a.attendance_rate);
    // The server words each reason with its threshold ("attendance 74% < 80%") in the language
    // the page asked for (Accept-Language); the code's own label is the fallback.
    const texts = (r.language || "en") === state.lang && (a.reason_texts || []).length ? a.reason_texts : null;
    row.insertCell().textContent = (texts || (a.reasons || []).map((x) => t(`reason_${x}`))).join(", ");
  }
  $("sem-risk-none").hidden = (r.at_risk || []).length > 0;
}

async function downloadSemester() {
  const semester = $("sem-semester").value;
  if (!semester) { showError({ code: "NO_SEMESTER" }); return; }
  await busy($("sem-pdf-btn"), async () => {
    say("preparingFile");
    const res = await api(`/api/v1/reports/semesters/${encodeURIComponent(semester)}/download?${new URLSearchParams({ format: "pdf", language: state.lang })}`, { raw: true });
    const name = filenameOf(res, `semester_${semester}_${state.lang}.pdf`);
    saveBlob(await res.blob(), name);
    say("exported", { name });
  });
}

async function loadClassCourses() {
  const semester = $("cls-semester").value;
  if (!semester) { showError({ code: "NO_SEMESTER" }); return; }
  await busy($("cls-load-btn"), async () => {
    const r = await api(`/api/v1/reports/semesters/${encodeURIComponent(semester)}?${new URLSearchParams({ language: state.lang })}`);
    const sel = $("cls-course");
    sel.replaceChildren();
    const courses = (r.report && r.report.courses) || [];
    for (const c of courses) {
      sel.append(new Option(t("courseOption", { code: c.course_code, title: c.title, n: c.enrolled }), c.course_code));
    }
    $("cls-btn").disabled = courses.length === 0;
    say("coursesLoaded", { n: courses.length });
  });
}

async function downloadClass() {
  const course = $("cls-course").value;
  const output = $("cls-output").value;
  if (!course) { showError({ code: "NO_COURSE" }); return; }
  await busy($("cls-btn"), async () => {
    say("preparingClass", { course });
    const res = await api("/api/v1/reports/bulk/student-performance", { method: "POST", body: { course_code: course, output, language: state.lang }, raw: true });
    const name = filenameOf(res, `student_reports_${course}.${output}`);
    saveBlob(await res.blob(), name);
    say("exported", { name });
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
  for (const choice of ["local", "source"]) {
    const b = $(`conflicts-all-${choice}`);
    b.addEventListener("click", () => resolveConflicts((state.conflicts || { items: [] }).items, choice, b));
  }
  $("import-file").addEventListener("change", () => {
    $("import-btn").disabled = true; $("import-result").hidden = true; state.lastResult = null;
  });
  $("import-format").addEventListener("change", () => { $("import-btn").disabled = true; });
  $("bundle-format").addEventListener("change", oneRosterExportNote);
  for (const r of document.querySelectorAll("input[name=strategy]")) {
    r.addEventListener("change", () => { $("import-btn").disabled = true; });
  }
  $("job-form").addEventListener("submit", startJob);
  $("job-notify-me").addEventListener("change", (e) => {
    $("job-notify-me-hint").hidden = !e.target.checked || Boolean(ownAddress());
  });
  $("notify-refresh").addEventListener("click", () => busy($("notify-refresh"), loadNotifications));
  $("notify-status").addEventListener("change", loadNotifications);
  $("sr-form").addEventListener("submit", findStudents);
  $("sr-pdf-btn").addEventListener("click", (e) => downloadStudent("pdf", e.currentTarget));
  $("sr-csv-btn").addEventListener("click", (e) => downloadStudent("csv", e.currentTarget));
  $("sem-show-btn").addEventListener("click", showSemester);
  $("school-pick").addEventListener("change", pickSchool);
  $("sem-pdf-btn").addEventListener("click", downloadSemester);
  $("cls-load-btn").addEventListener("click", loadClassCourses);
  $("cls-btn").addEventListener("click", downloadClass);
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
