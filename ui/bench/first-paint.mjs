// The UI's first paint in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core), against a running daemon. Not a test: a benchmark whose
// figures go to docs/benchmarks.md. Each run opens a fresh browser context
// (empty cache), so the assets are fetched every time.
//
//   SCALER_URL=http://127.0.0.1:8080 SCALER_TOKEN=... node ui/bench/first-paint.mjs [runs]
//
// Prints, per page, the median and range of: first contentful paint, and
// the time until the page's data is drawn (window.scalerUI.ready).
import { chromium } from 'playwright-core';

const base = process.env.SCALER_URL;
const token = process.env.SCALER_TOKEN;
const runs = Number(process.argv[2] || 20);
const args = ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
const pages = [['login form', '/', false], ['overview', '/#/', true], ['graphs (all counters, 1h)', '/#/graphs', true]];

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return `median ${s[Math.floor(s.length / 2)].toFixed(0)} ms (min ${s[0].toFixed(0)}, max ${s[s.length - 1].toFixed(0)})`;
};
for (const [name, path, logged] of pages) {
  const fcp = [];
  const ready = [];
  for (let i = 0; i < runs + 1; i++) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    if (logged) await context.addInitScript((t) => sessionStorage.setItem('scaler.token', t), token);
    const page = await context.newPage();
    await page.goto(`${base}${path}`);
    const t = await page.evaluate(async (logged) => {
      const wait = (cond) => new Promise((res) => { const f = () => (cond() ? res() : requestAnimationFrame(f)); f(); });
      await wait(() => performance.getEntriesByName('first-contentful-paint').length > 0);
      if (logged) await wait(() => window.scalerUI && window.scalerUI.ready);
      else await wait(() => !document.querySelector('#login').hidden);
      return { fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime, ready: performance.now() };
    }, logged);
    if (i > 0) { fcp.push(t.fcp); ready.push(t.ready); } // the first run warms the browser process
    await context.close();
  }
  console.log(`${name}: first contentful paint ${stats(fcp)}; drawn ${stats(ready)}`);
}
await browser.close();
