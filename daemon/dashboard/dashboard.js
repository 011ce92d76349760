// The taskrt dashboard: a task stream fed by /api/events (server-sent events read with
// fetch, so the bearer token goes in a header), charts and tables from /api/stats.
'use strict';

const KEEP_US = 300e6;          // runs kept after they ended (the widest window)
const MAX_RUNS = 4000;          // runs kept at most (the oldest ended ones go first)
const ROW_H = 14, LABEL_W = 150, AXIS_H = 16;
const MAX_LANES = 12;           // lanes per worker and executor before they share the last
const CHART_SECONDS = 120;

const state = {
  token: null,
  runs: new Map(),      // task id -> {id, handler, state, pool, slot, executor, start, end, failed}
  rects: new Map(),     // task id -> <rect>
  skewUs: 0,            // daemon clock - browser clock, from the latest event
  finishedPerSecond: new Map(),  // unix second -> tasks finished
  depth: [],            // [{t, pools: {name: queued}}]
  selected: null,
  dropped: 0,
  windowUs: 60e6,       // the task stream shows the last 60 s (the buttons change it)
  paused: false,        // the pointer is on the stream: it stops scrolling (bars hold still)
};

const $ = (id) => document.getElementById(id);
const nowUs = () => Date.now() * 1000 + state.skewUs;
const num = (v) => (v === undefined || v === null ? 0 : Number(v));

function takeToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('taskrt-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname);  // the token leaves the address bar
  }
  state.token = sessionStorage.getItem('taskrt-token');
}

function needLogin() {
  $('login').hidden = false;
  $('main').hidden = true;
  setConn('no token', false);
}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: 'Bearer ' + state.token } });
  if (res.status === 401) {
    needLogin();
    throw new Error('unauthorized');
  }
  if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
  return res.json();
}

function setConn(text, ok) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'conn ' + (ok ? 'ok' : 'bad');
}

// --- Runs -------------------------------------------------------------------------

const FINAL = new Set(['TASK_STATE_SUCCEEDED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELLED',
  'TASK_STATE_TIMED_OUT']);

function upsert(id, handler, taskState, d) {
  d = d || {};
  const start = num(d.started_unix_us);
  if (!start) return;  // never ran (e.g. cancelled while queued)
  const final = FINAL.has(taskState);
  let run = state.runs.get(id);
  if (!run) {
    run = { id };
    state.runs.set(id, run);
  }
  Object.assign(run, {
    handler,
    state: taskState,
    pool: d.pool || '?',
    slot: num(d.worker_slot),
    executor: (d.executor || 'EXECUTOR_UNSPECIFIED').replace('EXECUTOR_', '').toLowerCase(),
    start,
    end: final ? (num(d.finished_unix_us) || nowUs()) : 0,
    failed: final && taskState !== 'TASK_STATE_SUCCEEDED',
  });
  if (final && !run.counted) {
    run.counted = true;
    const sec = Math.floor(run.end / 1e6);
    state.finishedPerSecond.set(sec, (state.finishedPerSecond.get(sec) || 0) + 1);
  }
}

function prune() {
  const cutoff = nowUs() - KEEP_US;
  for (const [id, run] of state.runs) {
    if (run.end && run.end < cutoff) state.runs.delete(id);
  }
  if (state.runs.size > MAX_RUNS) {
    const ended = [...state.runs.values()].filter((r) => r.end).sort((a, b) => a.end - b.end);
    for (const r of ended.slice(0, state.runs.size - MAX_RUNS)) state.runs.delete(r.id);
  }
  for (const sec of state.finishedPerSecond.keys()) {
    if (sec < cutoff / 1e6) state.finishedPerSecond.delete(sec);
  }
}

// --- Task stream ------------------------------------------------------------------

function colour(handler) {
  let h = 0;
  for (const ch of handler) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 60%, 55%)`;
}

const POOL_ORDER = { cpu: 0, io: 1, 'python-cpu': 2, 'python-io': 3 };

// Rows: one per (pool, worker slot, executor, lane). A run takes the first lane of its
// worker and executor that is free when it starts (as Dask's task stream does).
function layout(runs) {
  const groups = new Map();
  for (const run of [...runs].sort((a, b) => a.start - b.start)) {
    const key = `${run.pool}\u0000${run.slot}\u0000${run.executor}`;
    let g = groups.get(key);
    if (!g) {
      g = { pool: run.pool, slot: run.slot, executor: run.executor, laneEnds: [] };
      groups.set(key, g);
    }
    let lane = g.laneEnds.findIndex((end) => end !== Infinity && end <= run.start);
    if (lane < 0) lane = g.laneEnds.length < MAX_LANES ? g.laneEnds.length : MAX_LANES - 1;
    g.laneEnds[lane] = run.end || Infinity;
    run.lane = lane;
    run.group = g;
  }
  const rows = [];
  const ordered = [...groups.values()].sort((a, b) =>
    (POOL_ORDER[a.pool] ?? 9) - (POOL_ORDER[b.pool] ?? 9) || a.slot - b.slot ||
    a.executor.localeCompare(b.executor));
  for (const g of ordered) {
    g.firstRow = rows.length;
    for (let i = 0; i < g.laneEnds.length; i++) {
      rows.push(i === 0 ? `${g.pool} #${g.slot} ${g.executor}` : '');
    }
  }
  return rows;
}

const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawStream() {
  const svg = $('stream');
  const width = Math.max(400, $('stream-box').clientWidth);
  const now = nowUs();
  const from = now - state.windowUs;
  const visible = [...state.runs.values()].filter((r) => !r.end || r.end >= from);
  const rows = layout(visible);
  const height = AXIS_H + Math.max(1, rows.length) * ROW_H + 4;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  const x = (t) => LABEL_W + ((t - from) / state.windowUs) * (width - LABEL_W - 4);

  // Axis and row labels are redrawn; bars are kept (a click must not hit a replaced one).
  let frame = svg.querySelector('g.frame');
  if (frame) frame.remove();
  frame = svgEl('g', { class: 'frame' });
  const span = state.windowUs / 1e6;
  const step = span <= 10 ? 1 : span <= 60 ? 10 : 60;
  for (let s = 0; s <= span; s += step) {
    const gx = x(from + s * 1e6);
    frame.appendChild(svgEl('line', { class: 'grid', x1: gx, x2: gx, y1: AXIS_H - 4, y2: height }));
    const label = svgEl('text', { x: gx + 2, y: 10 });
    label.textContent = s === span ? 'now' : `-${span - s}s`;
    frame.appendChild(label);
  }
  rows.forEach((name, i) => {
    if (!name) return;
    const t = svgEl('text', { x: 2, y: AXIS_H + i * ROW_H + 10 });
    t.textContent = name;
    frame.appendChild(t);
  });
  svg.insertBefore(frame, svg.firstChild);

  const seen = new Set();
  for (const run of visible) {
    seen.add(run.id);
    let rect = state.rects.get(run.id);
    if (!rect) {
      rect = svgEl('rect', { class: 'bar', 'data-id': run.id });
      rect.appendChild(document.createElementNS(SVG, 'title'));
      svg.appendChild(rect);
      state.rects.set(run.id, rect);
    }
    const x0 = Math.max(LABEL_W, x(run.start));
    const x1 = x(run.end || now);
    rect.setAttribute('x', x0.toFixed(1));
    rect.setAttribute('width', Math.max(4, x1 - x0).toFixed(1));
    rect.setAttribute('y', AXIS_H + (run.group.firstRow + run.lane) * ROW_H + 1);
    rect.setAttribute('height', ROW_H - 2);
    rect.setAttribute('fill', colour(run.handler));
    rect.setAttribute('data-handler', run.handler);
    rect.setAttribute('data-state', run.state.replace('TASK_STATE_', '').toLowerCase());
    rect.classList.toggle('failed', run.failed);
    rect.classList.toggle('running', !run.end);
    rect.classList.toggle('selected', run.id === state.selected);
    rect.firstChild.textContent = `${run.handler} ${run.id} ${run.state.replace('TASK_STATE_', '').toLowerCase()}`;
  }
  for (const [id, rect] of state.rects) {
    if (!seen.has(id)) {
      rect.remove();
      state.rects.delete(id);
    }
  }
  const handlers = [...new Set(visible.map((r) => r.handler))].sort();
  $('legend').replaceChildren(...handlers.map((h) => {
    const s = document.createElement('span');
    const i = document.createElement('i');
    i.style.background = colour(h);
    s.append(i, h);
    return s;
  }));
  $('stream-note').textContent = state.paused ? 'Paused while the pointer is on the stream.'
    : state.dropped
    ? `${state.dropped} events were skipped because they came faster than this page reads them.`
    : (visible.length ? '' : 'No task ran in the last minute.');
}

// --- Decision ---------------------------------------------------------------------

const us = (v) => {
  const n = num(v);
  if (n < 1000) return `${n} µs`;
  if (n < 1e6) return `${(n / 1000).toFixed(1)} ms`;
  return `${(n / 1e6).toFixed(2)} s`;
};
const lower = (v, prefix) => (v || '').replace(prefix, '').toLowerCase();

async function showDecision(id) {
  state.selected = id;
  drawStream();
  const box = $('decision');
  box.textContent = 'loading ' + id + '…';
  let task;
  try {
    task = await api('/api/task?id=' + encodeURIComponent(id));
  } catch (e) {
    box.textContent = `${id}: ${e.message}`;
    return;
  }
  const d = task.decision || {};
  const rows = [
    ['task', task.id],
    ['handler', task.spec ? task.spec.handler : ''],
    ['state', lower(task.state, 'TASK_STATE_')],
    ['class', `${lower(d.requested_class, 'TASK_CLASS_') || 'auto'} → ${lower(d.resolved_class, 'TASK_CLASS_')}`],
    ['reason', lower(d.reason, 'REASON_')],
    ['evidence', d.evidence || ''],
    ['ran on', `${lower(d.executor, 'EXECUTOR_')} in the ${d.pool} pool, worker #${num(d.worker_slot)} (pid ${num(d.worker_pid)})`],
    ['queue wait', us(d.queue_wait_us)],
    ['run time', us(d.run_time_us)],
    ['cpu time', us(d.cpu_time_us)],
    ['peak RSS', `${num(d.peak_rss_kb)} KiB`],
    ['attempt', String(num(d.attempt) || 1)],
  ];
  if (d.hint) rows.push(['hint', d.hint]);
  if (task.error && task.error.message) rows.push(['error', task.error.message]);
  const dl = document.createElement('dl');
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    if (k === 'error') dd.className = 'error';
    dl.append(dt, dd);
  }
  box.replaceChildren(dl);
  box.className = '';
}

// --- Events -----------------------------------------------------------------------

async function streamEvents() {
  while (true) {
    try {
      const res = await fetch('/api/events', { headers: { Authorization: 'Bearer ' + state.token } });
      if (res.status === 401) return needLogin();
      if (!res.ok) throw new Error('HTTP ' + res.status);
      setConn('live', true);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          onMessage(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
      setConn('disconnected; reconnecting…', false);
    } catch (e) {
      setConn(`disconnected (${e.message}); reconnecting…`, false);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function onMessage(block) {
  let event = 'message';
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data += line.slice(6);
  }
  if (event === 'dropped') {
    state.dropped += Number(data);
  } else if (event === 'task' && data) {
    const e = JSON.parse(data);
    state.skewUs = num(e.unix_us) - Date.now() * 1000;
    upsert(e.task_id, e.handler, e.state, e.decision);
  }
}

// --- Stats, charts, tables --------------------------------------------------------

function table(el, head, rows) {
  const tr = (cells, tag) => {
    const r = document.createElement('tr');
    for (const c of cells) {
      const cell = document.createElement(tag);
      cell.textContent = c;
      r.appendChild(cell);
    }
    return r;
  };
  el.replaceChildren(tr(head, 'th'), ...rows.map((r) => tr(r, 'td')));
}

let throughputPlot = null;
let depthPlot = null;
let depthPools = [];

function plotOptions(title, series) {
  return {
    width: 520, height: 180,
    scales: { x: { time: true } },
    axes: [{}, { size: 50 }],
    series: [{}, ...series.map((name, i) => ({
      label: name, stroke: `hsl(${(i * 97) % 360}, 60%, 45%)`, width: 1.5,
    }))],
    legend: { show: true, live: false },
  };
}

function drawCharts() {
  const nowSec = Math.floor(nowUs() / 1e6);
  const xs = [];
  const ys = [];
  for (let s = nowSec - CHART_SECONDS; s < nowSec; s++) {
    xs.push(s);
    ys.push(state.finishedPerSecond.get(s) || 0);
  }
  if (!throughputPlot) {
    throughputPlot = new uPlot(plotOptions('throughput', ['tasks/s']), [xs, ys], $('throughput'));
  } else {
    throughputPlot.setData([xs, ys]);
  }
  const pools = depthPools;
  if (!pools.length) return;
  const dx = state.depth.map((p) => p.t);
  const series = pools.map((name) => state.depth.map((p) => p.pools[name] || 0));
  if (!depthPlot) {
    depthPlot = new uPlot(plotOptions('queue depth', pools), [dx, ...series], $('depth'));
  } else {
    depthPlot.setData([dx, ...series]);
  }
}

async function refreshStats() {
  const s = await api('/api/stats');
  $('daemon').textContent = `daemon ${s.daemon || '?'} (pid ${s.daemon_pid}) · ${s.caller}${s.caller_is_admin ? ' (admin)' : ''} · ${s.python || ''}`;
  document.title = `taskrt ${s.daemon || ''}`;
  const pools = s.pools || [];
  depthPools = pools.map((p) => p.name);
  state.depth.push({ t: Date.now() / 1000, pools: Object.fromEntries(pools.map((p) => [p.name, num(p.queued)])) });
  while (state.depth.length > CHART_SECONDS) state.depth.shift();
  table($('pools'), ['pool', 'workers', 'queued', 'running', 'completed', 'respawns', 'recycled'],
    pools.map((p) => [p.name, num(p.workers), num(p.queued), num(p.running), num(p.completed),
      num(p.respawns), num(p.recycled)]));
  table($('workers'), ['pool', 'slot', 'pid', 'state', 'tasks run', 'running', 'threads'],
    (s.workers || []).map((w) => [w.pool, num(w.slot), num(w.pid), w.state, num(w.tasks_run),
      num(w.running), num(w.threads)]));
  table($('learned'), ['handler', 'function', 'class', 'cpu/wall', 'samples', 'runs', 'mean wall'],
    (s.learned || []).map((l) => [l.handler, l.function || '', lower(l.learned_class, 'TASK_CLASS_'),
      num(l.cpu_ratio).toFixed(2), num(l.samples), num(l.runs), us(Math.round(num(l.mean_wall_us)))]));
}

async function loadRecent() {
  const list = await api('/api/tasks?limit=1000');
  for (const t of list.tasks || []) upsert(t.id, t.spec ? t.spec.handler : '', t.state, t.decision);
}

// --- Start ------------------------------------------------------------------------

function start() {
  takeToken();
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem('taskrt-token', $('token').value.trim());
    location.reload();
  });
  if (!state.token) return needLogin();
  for (const b of document.querySelectorAll('#window button')) {
    b.addEventListener('click', () => {
      state.windowUs = Number(b.dataset.seconds) * 1e6;
      for (const o of document.querySelectorAll('#window button')) o.classList.toggle('on', o === b);
      $('window-s').textContent = b.dataset.seconds;
      drawStream();
    });
  }
  $('stream').addEventListener('mouseenter', () => { state.paused = true; });
  $('stream').addEventListener('mouseleave', () => { state.paused = false; });
  $('stream').addEventListener('click', (e) => {
    const id = e.target.getAttribute && e.target.getAttribute('data-id');
    if (id) showDecision(id);
  });
  loadRecent().catch(() => {});
  streamEvents();
  const tickStats = () => refreshStats().catch((e) => setConn(e.message, false));
  tickStats();
  setInterval(tickStats, 1000);
  setInterval(() => {
    prune();
    if (!state.paused) drawStream();
    drawCharts();
  }, 500);
}

start();
