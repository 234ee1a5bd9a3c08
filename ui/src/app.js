// scaler's web UI: plain ES module, no framework. It talks to the daemon's
// HTTP API (/api/v1, same origin, `Authorization: Bearer`) and nothing else.
// The token lives in sessionStorage (this tab only), never in a URL.
//
// Pages (the location hash; it never holds the token):
//   #/                      overview: status, held plans, fleet by group, triggers, jobs, runs
//   #/graphs?counter=&host=&range=   uPlot charts per counter, a series per host
//   #/plans, #/plans/ID     plans with their diff; Approve/Apply for a write token
//   #/runs, #/runs/ID       runs with per-host, per-step output

const TOKEN_KEY = 'scaler.token';
const LIVE_MS = 5000;
const RANGES = [['15m', 15 * 60e3], ['1h', 3600e3], ['6h', 6 * 3600e3], ['24h', 86400e3], ['7d', 7 * 86400e3]];
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];

// What tests and benchmarks may look at (no secrets): the live charts.
const ui = (window.scalerUI = { charts: [], page: null, ready: false });

let timers = [];
let status = null;

// ------------------------------------------------------------------ helpers

const $ = (sel, root = document) => root.querySelector(sel);

/** An element: h('td', {class: 'x'}, child, 'text', ...). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function ago(ms) {
  if (ms === null || ms === undefined) return '—';
  const s = Math.round((Date.now() - ms) / 1000);
  if (Math.abs(s) < 60) return `${s}s ago`;
  if (Math.abs(s) < 3600) return `${Math.round(s / 60)}m ago`;
  if (Math.abs(s) < 86400) return `${Math.round(s / 3600)}h ago`;
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 16);
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

const badge = (word) => h('span', { class: `badge s-${String(word).replace(/[^a-z-]/g, '')}` }, word);

function section(title, ...body) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...body);
}

function table(headers, rows, empty = 'none') {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows));
}

function every(ms, fn) {
  timers.push(setInterval(fn, ms));
}

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

/** A call to /api/v1 with the token; JSON back, or an ApiError with the answer's `error`. */
async function api(path, { method = 'GET', body } = {}) {
  const headers = { Authorization: `Bearer ${token() || ''}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
    referrerPolicy: 'no-referrer',
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (resp.status === 401) {
    logout('the token was refused; log in again');
    throw new ApiError(401, 'unauthorized');
  }
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || `${method} ${path}: HTTP ${resp.status}`);
  return data;
}

/** A list, or null when this daemon has no such route yet (404). */
async function optional(path) {
  try {
    return await api(path);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Every item of a list route, following `next` (the API gives at most 500 per page). */
async function allOf(path) {
  const all = [];
  let after = null;
  for (let i = 0; i < 100; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api(`${path}${sep}limit=500${after === null ? '' : `&after=${encodeURIComponent(after)}`}`);
    all.push(...items(page));
    if (!page || !page.next) break;
    after = page.next;
  }
  return { items: all, next: null };
}

const items = (list) => (list && Array.isArray(list.items) ? list.items : Array.isArray(list) ? list : []);

// ------------------------------------------------------------------ login

function showLogin(message) {
  clearTimers();
  $('#nav').hidden = $('#logout').hidden = $('#who').hidden = true;
  $('#page').replaceChildren();
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#token').focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  status = null;
  showLogin(message);
}

async function login(event) {
  event.preventDefault();
  const value = $('#token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('#token').value = '';
  try {
    await loadStatus();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e.status === 401 ? 'this token was refused' : e.message);
    return;
  }
  route();
}

async function loadStatus() {
  status = await api('/status');
  $('#login').hidden = true;
  $('#nav').hidden = $('#logout').hidden = $('#who').hidden = false;
  $('#who').textContent = `${status.token_scope === 'write' ? 'write' : 'read-only'} token · ${status.revision}`;
  return status;
}

const canWrite = () => status && status.token_scope === 'write';

// ------------------------------------------------------------------ routing

function clearTimers() {
  timers.forEach(clearInterval);
  timers = [];
  ui.charts.forEach((c) => c.destroy());
  ui.charts = [];
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  return { parts: path.split('/').filter(Boolean), params: new URLSearchParams(query || '') };
}

async function route() {
  clearTimers();
  ui.ready = false;
  if (!token()) return showLogin();
  if (!status) {
    try {
      await loadStatus();
    } catch (e) {
      return e.status === 401 ? undefined : showLogin(e.message);
    }
  }
  const { parts, params } = parseHash();
  const name = parts[0] || 'overview';
  const pages = { overview, graphs, plans, runs };
  const page = pages[name] || overview;
  ui.page = pages[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === ui.page);
  const root = h('div', { class: `page page-${ui.page}` });
  $('#page').replaceChildren(root);
  try {
    await page(root, parts.slice(1), params);
  } catch (e) {
    if (e.status !== 401) root.append(h('p', { class: 'error', role: 'alert' }, e.message));
  }
  ui.ready = true;
}

// ------------------------------------------------------------------ overview

async function overview(root) {
  const draw = async () => {
    const [st, groups, nodes, triggers, jobs, runList, planList] = await Promise.all([
      api('/status'),
      allOf('/groups'),
      allOf('/nodes'),
      allOf('/triggers'),
      api('/jobs?limit=10'),
      optional('/runs?limit=10'),
      optional('/plans?limit=20'),
    ]);
    status = st;
    const held = items(planList).filter((p) => p.state === 'held');
    root.replaceChildren(
      section(
        'Daemon',
        h(
          'dl',
          { class: 'facts' },
          h('dt', {}, 'running revision'), h('dd', { class: 'mono', id: 'revision' }, st.revision),
          h('dt', {}, 'applied revision'), h('dd', { class: 'mono' }, st.applied_revision || '—'),
          h('dt', {}, 'state serial'), h('dd', {}, st.state_serial),
          h('dt', {}, 'uptime'), h('dd', {}, duration(st.uptime_ms)),
          h('dt', {}, 'roles'), h('dd', {}, (st.roles || []).join(', ')),
          h('dt', {}, 'held plans'),
          h('dd', { id: 'held' }, planList === null ? 'plans are not served by this daemon' : held.length ? held.map((p) => h('a', { href: `#/plans/${encodeURIComponent(p.id)}`, class: 'held' }, `${p.id} (rev ${p.revision})`)) : 'none'),
        ),
      ),
      fleet(items(groups), items(nodes)),
      section(
        'Triggers',
        table(
          ['trigger', 'state', 'progress', 'last fired', 'values'],
          items(triggers).map((t) =>
            h('tr', { dataset: { trigger: t.name } },
              h('td', {}, h('b', {}, t.name), t.description ? h('div', { class: 'muted' }, t.description) : null),
              h('td', {}, badge(t.state), t.reason ? h('div', { class: 'muted' }, t.reason) : null),
              h('td', {}, progress(t)),
              h('td', {}, ago(t.last_fired_ms)),
              h('td', { class: 'mono small' }, (t.values || []).map((v) => `${v.expr ?? v.name ?? ''}=${v.value ?? '∅'}`).join('  ')),
            ),
          ),
          'no triggers',
        ),
      ),
      section(
        'Recent jobs',
        table(
          ['id', 'trigger', 'fired', 'status', 'attempts', 'error'],
          items(jobs).map((j) => h('tr', {}, h('td', {}, j.id), h('td', {}, j.trigger), h('td', {}, ago(j.fired_at_ms)), h('td', {}, badge(j.status)), h('td', {}, `${j.attempts}/${j.max_attempts}`), h('td', { class: 'small' }, j.last_error || ''))),
          'no jobs yet',
        ),
      ),
      section('Recent runs', runList === null ? h('p', { class: 'muted' }, 'runs are not served by this daemon') : runsTable(items(runList))),
    );
  };
  await draw();
  every(LIVE_MS, () => draw().catch(() => {}));
}

function progress(t) {
  if (t.state !== 'pending' || t.pending_ms === null || t.pending_ms === undefined) return '';
  if (!t.for_ms) return duration(t.pending_ms);
  const pct = Math.min(100, Math.round((100 * t.pending_ms) / t.for_ms));
  return h('span', { class: 'progress', title: `${pct}%` }, h('progress', { max: t.for_ms, value: Math.min(t.pending_ms, t.for_ms) }), ` ${duration(t.pending_ms)} / ${duration(t.for_ms)}`);
}

function fleet(groups, nodes) {
  const byGroup = new Map(groups.map((g) => [g.name, []]));
  for (const n of nodes) {
    if (!byGroup.has(n.group)) byGroup.set(n.group, []);
    byGroup.get(n.group).push(n);
  }
  const info = new Map(groups.map((g) => [g.name, g]));
  const cards = [...byGroup.entries()].map(([name, list]) => {
    const g = info.get(name);
    const desired = g ? g.desired_runtime ?? g.desired : null;
    return h('div', { class: 'group', dataset: { group: name } },
      h('h3', {}, name, g ? h('span', { class: 'muted' }, ` min ${g.min} · desired ${desired ?? '—'} · max ${g.max}`) : h('span', { class: 'muted' }, ' (not in the config)')),
      list.length ? h('ul', { class: 'nodes' }, list.map((n) => h('li', { class: 'node', dataset: { node: n.name } }, h('span', { class: 'mono' }, n.name), ' ', badge(n.status), n.address ? h('span', { class: 'muted small' }, ` ${n.address}`) : null))) : h('p', { class: 'muted' }, 'no nodes'),
    );
  });
  return section('Fleet', cards.length ? h('div', { class: 'groups' }, cards) : h('p', { class: 'muted' }, 'no groups'));
}

// ------------------------------------------------------------------ graphs

/** The visible range: a relative one (`1h`, live) or fixed `from`/`to` (ms). */
function rangeOf(params) {
  const from = Number(params.get('from'));
  const to = Number(params.get('to'));
  if (from && to && to > from) return { from, to, live: false, label: 'custom' };
  const label = params.get('range') || '1h';
  const m = /^(\d+)(s|m|h|d)$/.exec(label);
  const span = m ? Number(m[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2]] : RANGES[1][1];
  const now = Date.now();
  return { from: now - span, to: now, live: true, label };
}

/** About one point per two pixels, in whole seconds. */
const stepFor = (from, to, width) => Math.max(1000, Math.ceil((to - from) / Math.max(100, width / 2) / 1000) * 1000);

async function graphs(root, _rest, params) {
  const counters = items(await allOf('/counters'));
  const chosen = params.getAll('counter').filter((c) => counters.some((x) => x.name === c));
  const shown = chosen.length ? chosen : counters.map((c) => c.name).slice(0, 12);
  const hosts = params.getAll('host');
  const range = rangeOf(params);
  const go = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      p.delete(k);
      for (const x of [].concat(v)) if (x !== null && x !== undefined && x !== '') p.append(k, x);
    }
    location.hash = `#/graphs?${p}`;
  };
  const toLocal = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  const fromInput = h('input', { type: 'datetime-local', id: 'from', value: toLocal(range.from) });
  const toInput = h('input', { type: 'datetime-local', id: 'to', value: toLocal(range.to) });
  const live = h('input', { type: 'checkbox', id: 'live', checked: range.live });
  const controls = h('form', { class: 'controls card', onsubmit: (e) => e.preventDefault() },
    h('label', {}, 'Counter ', h('select', { id: 'counter', onchange: (e) => go({ counter: e.target.value }) },
      h('option', { value: '' }, `all (${counters.length})`),
      counters.map((c) => h('option', { value: c.name, selected: chosen.length === 1 && chosen[0] === c.name }, c.name)))),
    h('label', {}, 'Hosts ', h('input', { id: 'hosts', placeholder: 'all', value: hosts.join(' '), onchange: (e) => go({ host: e.target.value.split(/[\s,]+/) }) })),
    h('span', { class: 'ranges' }, RANGES.map(([l]) => h('button', { type: 'button', class: range.live && range.label === l ? 'on' : '', dataset: { range: l }, onclick: () => go({ range: l, from: null, to: null }) }, l))),
    fromInput, '–', toInput,
    h('button', { type: 'button', id: 'apply-range', onclick: () => go({ from: Date.parse(fromInput.value), to: Date.parse(toInput.value), range: null }) }, 'Show'),
    h('label', {}, live, ' live'),
  );
  live.addEventListener('change', () => (live.checked ? go({ from: null, to: null, range: range.live ? range.label : '1h' }) : go({ from: range.from, to: range.to, range: null })));
  const grid = h('div', { class: 'charts' });
  root.append(controls, grid);
  if (!counters.length) return grid.append(h('p', { class: 'muted' }, 'no counters in the config'));

  const charts = shown.map((name) => chart(grid, counters.find((c) => c.name === name), hosts, range));
  await Promise.all(charts.map((c) => c.load(range.from, range.to)));
  if (range.live) {
    every(LIVE_MS, () => {
      const span = range.to - range.from;
      const now = Date.now();
      for (const c of charts) if (!c.zoomed) c.load(now - span, now).catch(() => {});
    });
  }
}

/** One chart: a counter, a series per host; drag to zoom (data reloaded for the new range), double-click to reset. */
function chart(grid, counter, hosts, range) {
  const box = h('div', { class: 'card chart', dataset: { counter: counter.name } });
  const title = h('h3', {}, counter.name, counter.unit ? h('span', { class: 'muted' }, ` (${counter.unit})`) : null);
  const note = h('p', { class: 'muted small' });
  const plot = h('div', { class: 'plot' });
  box.append(title, plot, note);
  grid.append(box);
  const state = { u: null, keys: '', zoomed: false, dragged: false };

  const opts = (labels, width) => ({
    width,
    height: 240,
    cursor: { drag: { x: true, y: false, setScale: true } },
    scales: { x: { time: true } },
    series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: false } }))],
    axes: [{}, { size: 60 }],
    legend: { live: true },
    hooks: {
      // A drag selects first, then sets the x scale: only that reloads data (not our own setScale calls).
      setSelect: [(u) => {
        if (u.select.width > 0) state.dragged = true;
      }],
      setScale: [
        (u, key) => {
          if (key !== 'x' || !state.dragged) return;
          state.dragged = false;
          const { min, max } = u.scales.x;
          if (min === null || max === null) return;
          state.zoomed = true;
          // Reload the zoomed range at a finer step; keep the zoom.
          clearTimeout(state.zoomTimer);
          state.zoomTimer = setTimeout(() => api_.load(Math.floor(min * 1000), Math.ceil(max * 1000)).catch(() => {}), 150);
        },
      ],
    },
  });

  const api_ = {
    get zoomed() {
      return state.zoomed;
    },
    get u() {
      return state.u;
    },
    counter: counter.name,
    async load(from, to) {
      const width = Math.max(300, plot.clientWidth || 600);
      const q = new URLSearchParams({ counter: counter.name, from: String(from), to: String(to), step: String(stepFor(from, to, width)), limit: '50' });
      for (const host of hosts) if (host) q.append('host', host);
      const answer = await api(`/series?${q}`);
      const series = items(answer);
      const labels = series.map((s) => Object.entries(s.series).filter(([k]) => k !== 'counter').map(([k, v]) => (k === 'host' ? v : `${k}=${v}`)).join(' '));
      // uPlot wants columns: x in seconds, then one y column per series (null: a gap).
      const xs = [];
      const index = new Map();
      for (const s of series) for (const [t] of s.points) if (!index.has(t)) index.set(t, xs.push(t) - 1);
      xs.sort((a, b) => a - b);
      xs.forEach((t, i) => index.set(t, i));
      const data = [xs.map((t) => t / 1000), ...series.map((s) => {
        const col = new Array(xs.length).fill(null);
        for (const [t, v] of s.points) col[index.get(t)] = v;
        return col;
      })];
      const points = series.reduce((n, s) => n + s.points.filter((p) => p[1] !== null).length, 0);
      note.textContent = series.length ? `${series.length} series · ${points} points · step ${duration(answer.step_ms)}${answer.next ? ' · more series than shown' : ''}` : 'no data in this range';
      const keys = labels.join('\n');
      if (!state.u || keys !== state.keys) {
        if (state.u) {
          state.u.destroy();
          ui.charts = ui.charts.filter((c) => c !== state.u);
        }
        state.keys = keys;
        state.u = new uPlot(opts(labels, width), data, plot);
        state.u.root.dataset.counter = counter.name;
        state.u.root.addEventListener('dblclick', () => {
          state.zoomed = false;
          api_.load(range.live ? Date.now() - (range.to - range.from) : range.from, range.live ? Date.now() : range.to).catch(() => {});
        });
        ui.charts.push(state.u);
      } else {
        state.u.setData(data, false);
      }
      state.u.setScale('x', { min: from / 1000, max: to / 1000 });
      state.loaded = (state.loaded || 0) + 1;
      box.dataset.loaded = String(state.loaded);
    },
  };
  return api_;
}

// ------------------------------------------------------------------ plans

async function plans(root, rest) {
  if (rest[0]) return plan(root, decodeURIComponent(rest[0]));
  const list = await optional('/plans?limit=100');
  if (list === null) return root.append(section('Plans', h('p', { class: 'muted' }, 'this daemon does not serve plans yet (GET /api/v1/plans)')));
  root.append(
    section('Plans', table(['id', 'revision', 'state', 'created', 'add', 'change', 'destroy', 'reason'],
      items(list).map((p) => h('tr', { dataset: { plan: p.id } },
        h('td', {}, h('a', { href: `#/plans/${encodeURIComponent(p.id)}`, class: 'mono' }, p.id)),
        h('td', { class: 'mono' }, p.revision ?? ''), h('td', {}, badge(p.state)), h('td', {}, ago(p.created_ms)),
        h('td', { class: 'add' }, p.summary?.add ?? ''), h('td', { class: 'change' }, p.summary?.change ?? ''), h('td', { class: 'destroy' }, p.summary?.destroy ?? ''),
        h('td', { class: 'small' }, p.reason ?? ''))),
      'no plans')),
  );
}

/** The plan's text diff, coloured as the CLI colours it: + add, - destroy, ~ change, -/+ replace. */
function diffView(text) {
  const pre = h('pre', { class: 'diff', id: 'diff' });
  for (const line of String(text || '').split('\n')) {
    const t = line.trimStart();
    const cls = t.startsWith('-/+') || t.startsWith('+/-') ? 'replace' : t.startsWith('+') ? 'add' : t.startsWith('-') ? 'destroy' : t.startsWith('~') ? 'change' : t.startsWith('#') ? 'comment' : '';
    pre.append(h('span', { class: cls }, line), '\n');
  }
  return pre;
}

async function plan(root, id) {
  const p = await api(`/plans/${encodeURIComponent(id)}`);
  const out = h('div', { id: 'task' });
  const act = (verb) => async (event) => {
    event.target.disabled = true;
    try {
      const answer = await api(`/plans/${encodeURIComponent(id)}/${verb}`, { method: 'POST' });
      await followTask(answer.task, out);
    } catch (e) {
      out.replaceChildren(h('p', { class: 'error', role: 'alert' }, e.message));
    }
    const again = h('div');
    root.replaceChildren(again);
    await plan(again, id).catch((e) => again.append(h('p', { class: 'error' }, e.message)));
    again.append(out);
  };
  const buttons = [];
  if (canWrite()) {
    if (p.state === 'held') buttons.push(h('button', { type: 'button', id: 'approve', class: 'primary', onclick: act('approve') }, 'Approve'));
    if (p.state === 'held' || p.state === 'approved') buttons.push(h('button', { type: 'button', id: 'apply', class: 'primary', onclick: act('apply') }, 'Apply'));
  }
  root.append(
    section(`Plan ${p.id}`,
      h('dl', { class: 'facts' },
        h('dt', {}, 'state'), h('dd', { id: 'plan-state' }, badge(p.state)),
        h('dt', {}, 'revision'), h('dd', { class: 'mono' }, p.revision ?? '—'),
        h('dt', {}, 'created'), h('dd', {}, ago(p.created_ms)),
        h('dt', {}, 'reason'), h('dd', {}, p.reason ?? '—'),
        h('dt', {}, 'summary'), h('dd', {}, `${p.summary?.add ?? 0} to add, ${p.summary?.change ?? 0} to change, ${p.summary?.destroy ?? 0} to destroy`)),
      buttons.length ? h('div', { class: 'actions' }, buttons) : canWrite() ? null : h('p', { class: 'muted' }, 'read-only token: approving and applying need the write token'),
      diffView(p.diff)),
  );
  root.append(out);
}

/** Polls a task until it ends; shows its state as it goes. */
async function followTask(id, out) {
  const deadline = Date.now() + 10 * 60e3;
  for (;;) {
    const t = await api(`/tasks/${encodeURIComponent(id)}`);
    out.replaceChildren(section(`Task ${t.id}`, h('p', {}, `${t.kind ?? 'task'}: `, badge(t.state)), t.error ? h('p', { class: 'error' }, t.error) : null, t.result ? h('pre', { class: 'small' }, JSON.stringify(t.result, null, 2)) : null));
    if (!['pending', 'running'].includes(t.state) || Date.now() > deadline) return t;
    await new Promise((r) => setTimeout(r, 500));
  }
}

// ------------------------------------------------------------------ runs

function runsTable(list) {
  return table(['id', 'what', 'state', 'started', 'hosts'],
    list.map((r) => h('tr', { dataset: { run: r.id } },
      h('td', {}, h('a', { href: `#/runs/${encodeURIComponent(r.id)}`, class: 'mono' }, r.id)),
      h('td', {}, r.playbook ?? r.kind ?? ''), h('td', {}, badge(r.state ?? '')), h('td', {}, ago(r.started_ms ?? r.created_ms)),
      h('td', {}, Array.isArray(r.hosts) ? r.hosts.length : r.hosts ?? ''))),
    'no runs yet');
}

async function runs(root, rest) {
  if (rest[0]) return run(root, decodeURIComponent(rest[0]));
  const list = await optional('/runs?limit=100');
  root.append(section('Runs', list === null ? h('p', { class: 'muted' }, 'this daemon does not serve runs yet (GET /api/v1/runs)') : runsTable(items(list))));
}

async function run(root, id) {
  const r = await api(`/runs/${encodeURIComponent(id)}`);
  const hosts = Array.isArray(r.hosts) ? r.hosts : Object.entries(r.hosts || {}).map(([host, v]) => ({ host, ...(Array.isArray(v) ? { steps: v } : v) }));
  root.append(
    section(`Run ${r.id}`, h('p', {}, r.playbook ?? r.kind ?? '', ' ', badge(r.state ?? ''), r.error ? h('span', { class: 'error' }, ` ${r.error}`) : null),
      hosts.length ? hosts.map((hst) => h('details', { class: 'host', open: true, dataset: { host: hst.host ?? hst.name } },
        h('summary', {}, h('b', { class: 'mono' }, hst.host ?? hst.name ?? '?'), ' ', badge(hst.state ?? '')),
        table(['step', 'state', 'exit', 'output'], (hst.steps || []).map((s) => h('tr', {},
          h('td', {}, s.name ?? s.id ?? ''), h('td', {}, badge(s.state ?? '')), h('td', {}, s.exit_code ?? s.rc ?? ''),
          h('td', {}, s.stdout ? h('pre', { class: 'out' }, s.stdout) : null, s.stderr ? h('pre', { class: 'err' }, s.stderr) : null, s.error ? h('p', { class: 'error' }, s.error) : null))), 'no steps'))) : h('pre', {}, JSON.stringify(r, null, 2))),
  );
}

// ------------------------------------------------------------------ start

$('#login').addEventListener('submit', login);
$('#logout').addEventListener('click', () => logout('logged out'));
window.addEventListener('hashchange', route);
route();
