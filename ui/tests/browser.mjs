// Browser checks of the web UI in real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded).
// Run by tests/ui.rs against a real daemon; one line per check, then
// "N passed, N failed". Environment:
//   SCALER_URL          the daemon, e.g. http://127.0.0.1:8080
//   SCALER_TOKEN        daemon.token
//   SCALER_READ_TOKEN   daemon.read_token
//   SCALER_NODES        node names the overview must show (comma-separated)
//   SCALER_COUNTER      a counter with data (the graph check)
//   SCALER_SHOTS        where screenshots go
//   SCALER_CHECKS       the checks to run (comma-separated; default: all but approve)
//   SCALER_APPROVE_NODE the node an approved held plan launches (approve check)
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = (k, d) => process.env[k] ?? d;
const base = env('SCALER_URL');
const token = env('SCALER_TOKEN');
const readToken = env('SCALER_READ_TOKEN');
const shots = env('SCALER_SHOTS', '.');
const counter = env('SCALER_COUNTER', 'tick');
const nodes = env('SCALER_NODES', '').split(',').filter(Boolean);
const wanted = env('SCALER_CHECKS', 'login,overview,graph,readonly,logout').split(',');

/** Root cannot use Chromium's sandbox (see shared/DEPS.md). */
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

async function login(page, tok) {
  await page.goto(`${base}/`);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', tok);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#nav:not([hidden])', { timeout: 10000 });
}

const checks = {
  // A wrong token is refused; the right one logs in, and stays out of the URL.
  async login(page) {
    await page.goto(`${base}/`);
    await page.waitForSelector('#login:not([hidden])');
    await page.fill('#token', 'not-the-token');
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#login-error').textContent.includes('refused'));
    assert(await page.$('#nav[hidden]'), 'the nav shows after a refused token');
    await login(page, token);
    assert(!page.url().includes(token), 'the token is in the URL');
  },
  async overview(page) {
    await login(page, token);
    await page.waitForSelector('.page-overview #revision');
    for (const n of nodes) await page.waitForSelector(`[data-node="${n}"]`, { timeout: 10000 });
    const text = await page.textContent('#page');
    for (const n of nodes) assert(text.includes(n), `node ${n} not shown`);
    assert(await page.$('[data-group="web"]'), 'group web not shown');
    assert(await page.$('[data-trigger]'), 'no trigger row');
    await page.screenshot({ path: path.join(shots, 'overview.png'), fullPage: true });
  },
  async graph(page) {
    await login(page, token);
    await page.goto(`${base}/#/graphs?counter=${encodeURIComponent(counter)}&range=1m`);
    const sel = `.chart[data-counter="${counter}"]`;
    await page.waitForSelector(`${sel}[data-loaded]`, { timeout: 10000 });
    // Wait for some real points (the live refresh brings them in).
    await page.waitForFunction((c) => {
      const u = window.scalerUI.charts.find((x) => x.root.dataset.counter === c);
      return u && u.data.length > 1 && u.data.slice(1).some((col) => col.filter((v) => v !== null).length >= 3);
    }, counter, { timeout: 20000 });
    const scale = () => page.evaluate((c) => {
      const u = window.scalerUI.charts.find((x) => x.root.dataset.counter === c);
      return { min: u.scales.x.min, max: u.scales.x.max };
    }, counter);
    const before = await scale();
    const over = await page.$(`${sel} .u-over`);
    const box = await over.boundingBox();
    const y = box.y + box.height / 2;
    await page.mouse.move(box.x + box.width * 0.3, y);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.5, y, { steps: 5 });
    await page.mouse.move(box.x + box.width * 0.7, y, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(([c, b]) => {
      const u = window.scalerUI.charts.find((x) => x.root.dataset.counter === c);
      return u && u.scales.x.min > b.min + 1 && u.scales.x.max < b.max - 1;
    }, [counter, before], { timeout: 5000 });
    const after = await scale();
    const ratio = (after.max - after.min) / (before.max - before.min);
    assert(ratio > 0.3 && ratio < 0.5, `the drag over 40% of the width zoomed to ${ratio.toFixed(2)} of the range (${JSON.stringify({ before, after })})`);
    await page.screenshot({ path: path.join(shots, 'graph.png'), fullPage: true });
    return `x ${before.min.toFixed(0)}..${before.max.toFixed(0)} -> ${after.min.toFixed(0)}..${after.max.toFixed(0)}`;
  },
  async readonly(page) {
    await login(page, readToken);
    const who = await page.textContent('#who');
    assert(who.includes('read-only'), `the header says ${who}`);
    await page.goto(`${base}/#/plans`);
    await page.waitForFunction(() => window.scalerUI.ready && window.scalerUI.page === 'plans');
    const held = await page.$$('[data-plan] a');
    if (held.length) {
      await held[0].click();
      await page.waitForSelector('#diff');
    }
    assert(!(await page.$('#approve')) && !(await page.$('#apply')), 'a read-only token sees Approve/Apply');
    // The API itself refuses a change made with this token.
    const answer = await page.evaluate(async () => {
      const r = await fetch('/api/v1/plans/any/approve', { method: 'POST', headers: { Authorization: `Bearer ${sessionStorage.getItem('scaler.token')}` } });
      return { status: r.status, body: await r.json() };
    });
    assert(answer.status === 403, `POST approve with the read token: ${JSON.stringify(answer)}`);
    await page.screenshot({ path: path.join(shots, 'readonly.png'), fullPage: true });
  },
  async logout(page) {
    await login(page, token);
    assert(await page.evaluate(() => sessionStorage.getItem('scaler.token')) === token, 'token not in sessionStorage');
    await page.reload();
    await page.waitForSelector('#nav:not([hidden])', { timeout: 10000 });
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    assert(await page.evaluate(() => sessionStorage.getItem('scaler.token')) === null, 'the token stayed after logout');
  },
  async approve(page) {
    const launched = env('SCALER_APPROVE_NODE');
    await login(page, token);
    await page.goto(`${base}/#/plans`);
    const link = await page.waitForSelector('[data-plan] a', { timeout: 20000 });
    const id = await link.textContent();
    await link.click();
    await page.waitForSelector('#approve');
    assert((await page.textContent('#plan-state')).includes('held'), 'the plan is not held');
    assert((await page.textContent('#diff')).includes(launched), `the diff does not name ${launched}`);
    await page.click('#approve');
    await page.waitForFunction(() => /success|failure|cancelled/.test(document.querySelector('#task')?.textContent || ''), null, { timeout: 60000 });
    const task = await page.textContent('#task');
    assert(task.includes('success'), `the task ended: ${task}`);
    await page.goto(`${base}/#/`);
    await page.waitForSelector(`[data-node="${launched}"]`, { timeout: 30000 });
    await page.screenshot({ path: path.join(shots, 'approved.png'), fullPage: true });
    return `plan ${id} approved, ${launched} shown`;
  },
};

const browser = await chromium.launch({ executablePath: env('CHROMIUM', '/usr/bin/chromium'), headless: true, args });
let passed = 0;
let failed = 0;
for (const name of wanted) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const foreign = [];
  const errors = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith('data:')) foreign.push(r.url());
    if (token && r.url().includes(token)) foreign.push(`a URL with the token: ${r.url()}`);
  });
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/status of 40[134]/.test(m.text()) && errors.push(m.text()));
  try {
    const note = await checks[name](page);
    assert(!foreign.length, `requests beyond the daemon's origin: ${foreign.join(', ')}`);
    assert(!errors.length, `page errors: ${errors.join('; ')}`);
    passed++;
    console.log(`ok ${name}${note ? ` (${note})` : ''}`);
  } catch (e) {
    failed++;
    await page.screenshot({ path: path.join(shots, `failed-${name}.png`), fullPage: true }).catch(() => {});
    console.log(`FAIL ${name}: ${e.message.split('\n')[0]}`);
  }
  await context.close();
}
await browser.close();
console.log(`browser: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
