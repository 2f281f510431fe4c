// console.test.mjs - the web console (/console/) in headless Chromium, driven by playwright-core:
// what a person does with it, step by step, against a real API with data seeded by
// tests/integration/test_console.py (tests/fixtures/console/seed.json, posted in that order).
//
// Environment:
//   BP_API_URL           the API serving the console (no keys), e.g. http://127.0.0.1:8000
//   BP_PARTITIONS        partitions of its topic (the live view shows one row each)
//   BP_AUTH_API_URL      optional: an API with keys on; BP_AUTH_API_KEY a key with read scope there
//   BP_SCREENSHOTS_DIR   optional: save PNGs of the main views there (ops/screenshots)
//   BP_CHROMIUM          optional: the browser (default /usr/bin/chromium, Debian's package)
// Prints one line per step and "N passed, N failed"; exits 1 on the first failure.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'console');
const API = required('BP_API_URL');
const PARTITIONS = Number(process.env.BP_PARTITIONS || '3');
const AUTH_API = process.env.BP_AUTH_API_URL || '';
const AUTH_KEY = process.env.BP_AUTH_API_KEY || '';
const SHOTS = process.env.BP_SCREENSHOTS_DIR || '';
const STEP_TIMEOUT_MS = 20000;

const seed = JSON.parse(fs.readFileSync(path.join(fixtures, 'seed.json'), 'utf8'));
const badText = fs.readFileSync(path.join(fixtures, 'bad_batch.json'), 'utf8');
const goodPath = path.join(fixtures, 'good_batch.json');
const good = JSON.parse(fs.readFileSync(goodPath, 'utf8'));
const seeded = seed.flatMap((b) => b.objects.map((o) => ({ ...o, batch_id: b.batch_id })));
const pairs = (o) => Object.fromEntries(o.data.map((p) => [p.key, p.value]));
const matching = (filter) => seeded.filter((o) => Object.entries(filter).every(([k, v]) => pairs(o)[k] === v))
  .map((o) => o.object_id);

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`console.test.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v.replace(/\/$/, '');
}

// ---- a tiny step runner ------------------------------------------------------------------------
let passed = 0;
let page = null;
const consoleErrors = []; // console.error messages and uncaught exceptions, with the step they came in
let currentStep = '';
const started = Date.now();

async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    console.log(`not ok ${passed + 1} - ${name}\n${e && e.stack ? e.stack : e}`);
    if (page) {
      const shot = path.join(SHOTS || os.tmpdir(), 'console-failure.png');
      await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
      console.log(`# screenshot of the failure: ${shot}`);
      console.log(`# page URL: ${page.url()}`);
    }
    if (consoleErrors.length) console.log('# browser console errors:\n' + consoleErrors.map((c) => `#   [${c.step}] ${c.text} ${c.url}`).join('\n'));
    console.log(`${passed} passed, 1 failed`);
    await shutdown();
    process.exit(1);
  }
  passed++;
  console.log(`ok ${passed} - ${name} (${Date.now() - t0} ms)`);
}

async function screenshot(name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name), fullPage: false });
}

async function apiGet(base, p, key) {
  const r = await fetch(base + p, { headers: key ? { Authorization: 'Bearer ' + key } : {} });
  return { status: r.status, body: await r.json().catch(() => null) };
}

// Wait (bounded) until fn() is truthy; fn may throw meanwhile.
async function eventually(fn, what, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (last ? ` (last error: ${last.message})` : ''));
    await new Promise((r) => setTimeout(r, wait));
  }
}

// The page has handled its current hash (route() ran and filled the view's form).
const routed = (hash) => page.waitForFunction((h) => location.hash === h && document.body.dataset.route === h, hash);

const rowIds = (table) => page.$$eval(`${table} tbody tr[data-object-id]`, (rows) => rows.map((r) => r.dataset.objectId));

async function waitRows(table, expected) {
  await eventually(async () => {
    const ids = await rowIds(table);
    return JSON.stringify(ids) === JSON.stringify(expected) ? ids : null;
  }, `rows ${JSON.stringify(expected)} in ${table} (have ${JSON.stringify(await rowIds(table))})`);
}

// ---- the browser -------------------------------------------------------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bp-chromium-'));
let context = null;

async function shutdown() {
  if (context) await context.close().catch(() => {});
  context = null;
  fs.rmSync(profile, { recursive: true, force: true });
}

context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.BP_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 820 },
  locale: 'en-US',
  timezoneId: 'UTC',
  // without the background-networking flags Chromium keeps trying to reach Google's services
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-default-apps', '--disable-extensions', '--metrics-recording-only', '--no-default-browser-check'],
});
context.setDefaultTimeout(STEP_TIMEOUT_MS);

function watch(p) {
  p.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push({ step: currentStep, text: m.text(), url: (m.location() || {}).url || '' });
  });
  p.on('pageerror', (e) => consoleErrors.push({ step: currentStep, text: 'uncaught: ' + e.message }));
  // the console must work with no internet: nothing may leave for another origin
  p.on('request', (r) => {
    const origin = new URL(r.url()).origin;
    if (!r.url().startsWith('data:') && origin !== new URL(API).origin && (!AUTH_API || origin !== new URL(AUTH_API).origin)) {
      consoleErrors.push({ step: currentStep, text: 'request to another origin: ' + r.url() });
    }
  });
}

page = context.pages()[0] || await context.newPage();
watch(page);

// Errors the browser logs for answers the test provokes: the refused batch file (400 from the POST) and
// the calls without a key, or with a wrong one, to the API with keys on (401). Told apart by the URL, not
// by the step: Chromium may report them a little after the step saw the page react.
const expectedError = (c) => {
  const m = /^Failed to load resource: the server responded with a status of (\d+)/.exec(c.text);
  if (!m) return false;
  const url = c.url.replace(/\?.*$/, '');
  return (m[1] === '400' && url === API + '/api/v1/batches/') || (m[1] === '401' && AUTH_API !== '' && url.startsWith(AUTH_API + '/api/v1/'));
};
const unexpectedErrors = () => consoleErrors.filter((c) => !expectedError(c));

// ---- the steps -----------------------------------------------------------------------------------
await step('the console loads with its CSP and without console errors', async () => {
  const res = await page.goto(API + '/console/');
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-security-policy'], /default-src 'self'/);
  await page.waitForSelector('#objects-table tbody tr[data-object-id]');
  assert.equal(await page.title(), 'batchpipe console');
  const total = (await apiGet(API, '/api/v1/objects/')).body.count;
  assert.ok(total >= seeded.length);
  const summary = await page.textContent('#objects-summary');
  assert.match(summary, new RegExp(`^${total} objects; showing 10\\.`), summary);
  await waitRows('#objects-table', seeded.slice(0, 10).map((o) => o.object_id));
  assert.deepEqual(unexpectedErrors(), []);
});

await step('filtering by two key/value pairs shows exactly the matching rows', async () => {
  const expected = matching({ color: 'red', type: 'shoe' });
  assert.ok(expected.length >= 3 && expected.length < 10);
  await page.fill('#pairs .pair:nth-child(1) .pair-key', 'color');
  await page.fill('#pairs .pair:nth-child(1) .pair-value', 'red');
  await page.click('#add-pair');
  await page.fill('#pairs .pair:nth-child(2) .pair-key', 'type');
  await page.fill('#pairs .pair:nth-child(2) .pair-value', 'shoe');
  await page.click('#filter-apply');
  await waitRows('#objects-table', expected);
  assert.match(await page.textContent('#objects-summary'), new RegExp(`^${expected.length} objects match`));
  assert.equal(await page.isDisabled('#objects-next'), true);
  await screenshot('console-browse.png');
});

await step('a typed value filters by type: size 40 (a number) but not "40" (a string)', async () => {
  await page.goto(API + '/console/#objects');
  await routed('#objects');
  await page.fill('#pairs .pair:nth-child(1) .pair-key', 'size');
  await page.fill('#pairs .pair:nth-child(1) .pair-value', '40');
  await page.click('#filter-apply');
  await waitRows('#objects-table', matching({ size: 40 }));
  await page.fill('#pairs .pair:nth-child(1) .pair-value', '"40"');
  await page.click('#filter-apply');
  await eventually(async () => (await page.textContent('#objects-table tbody')).includes('No object matches'), 'no rows for "40"');
});

await step('following the pages of a filter shows each page exactly, and back', async () => {
  const shoes = matching({ type: 'shoe' });
  assert.ok(shoes.length > 10 && shoes.length <= 20);
  await page.click('#filter-clear');
  await routed('#objects');
  await page.fill('#pairs .pair:nth-child(1) .pair-key', 'type');
  await page.fill('#pairs .pair:nth-child(1) .pair-value', 'shoe');
  await page.click('#filter-apply');
  await waitRows('#objects-table', shoes.slice(0, 10));
  await page.click('#objects-next');
  await waitRows('#objects-table', shoes.slice(10));
  assert.equal(await page.isDisabled('#objects-next'), true);
  // the filter form still says what is shown
  assert.equal(await page.inputValue('#pairs .pair:nth-child(1) .pair-key'), 'type');
  await page.click('#objects-prev');
  await waitRows('#objects-table', shoes.slice(0, 10));
});

const victim = seeded[7];

await step('opening an object shows its pairs and JSON', async () => {
  await page.click(`#objects-table a[href="#object/${encodeURIComponent(victim.object_id)}"]`);
  await page.waitForSelector('#view-object:not([hidden]) #object-pairs tbody tr');
  assert.equal(await page.textContent('#object-title'), victim.object_id);
  const rows = await page.$$eval('#object-pairs tbody tr', (trs) => trs.map((tr) => [...tr.cells].slice(1, 3).map((c) => c.textContent)));
  assert.deepEqual(rows, victim.data.map((p) => [p.key, typeof p.value === 'string' ? p.value : JSON.stringify(p.value)]));
  const json = JSON.parse(await page.textContent('#object-json'));
  assert.equal(json.batch_id, victim.batch_id);
  assert.deepEqual(json.data, victim.data);
  await screenshot('console-object.png');
});

await step('deleting asks first: cancel keeps the object, confirm deletes it', async () => {
  await page.click('#object-delete');
  await page.waitForSelector('#confirm-dialog[open]');
  assert.match(await page.textContent('#confirm-text'), new RegExp(victim.object_id));
  await page.click('#confirm-cancel');
  await page.waitForSelector('#confirm-dialog', { state: 'hidden' });
  assert.equal((await apiGet(API, `/api/v1/objects/${victim.object_id}/`)).status, 200);
  await page.click('#object-delete');
  await page.waitForSelector('#confirm-dialog[open]');
  await page.click('#confirm-ok');
  await page.waitForSelector('#notice:not([hidden])');
  assert.match(await page.textContent('#notice'), /Deleted the object/);
  await eventually(async () => (await apiGet(API, `/api/v1/objects/${victim.object_id}/`)).status === 404, 'the object gone from the API');
  await page.waitForSelector('#view-objects:not([hidden]) #objects-table tbody tr[data-object-id]');
  assert.ok(!(await rowIds('#objects-table')).includes(victim.object_id));
});

await step('a bad file dropped on the drop zone shows each validation error inline', async () => {
  await page.click('#nav a[data-view="post"]');
  await page.waitForSelector('#view-post:not([hidden]) #drop-zone');
  // what the API says about this file, asked directly: the page must show all of it
  const direct = await fetch(API + '/api/v1/batches/', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: badText });
  const problem = await direct.json();
  assert.equal(direct.status, 400);
  assert.ok(problem.errors.length >= 3);
  // a real drop: a DataTransfer holding a File, as the browser builds it when a file is dropped
  const dataTransfer = await page.evaluateHandle((text) => {
    const dt = new DataTransfer();
    dt.items.add(new File([text], 'bad_batch.json', { type: 'application/json' }));
    return dt;
  }, badText);
  await page.dispatchEvent('#drop-zone', 'dragenter', { dataTransfer });
  await page.dispatchEvent('#drop-zone', 'dragover', { dataTransfer });
  assert.ok(await page.$eval('#drop-zone', (z) => z.classList.contains('over')));
  await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer });
  await page.waitForSelector('#post-result.bad ul.errors li');
  assert.match(await page.textContent('#post-result h4'), /Refused \(400 Validation failed\)/);
  assert.match(await page.textContent('#post-result .file'), /bad_batch\.json/);
  const shown = await page.$$eval('#post-result ul.errors li', (lis) => lis.map((li) => ({
    pointer: li.querySelector('.pointer').textContent, message: li.querySelector('.message').textContent,
    found: li.querySelector('.found') ? li.querySelector('.found code').textContent : null,
  })));
  assert.deepEqual(shown.map(({ pointer, message }) => ({ pointer, message })), problem.errors);
  // and where it can, the offending value from the file
  const objectId = shown.find((e) => e.pointer === '/objects/0/object_id');
  assert.ok(objectId && objectId.found === '7', JSON.stringify(shown));
  assert.deepEqual((await apiGet(API, '/api/v1/batches/')).body.results.filter((b) => b.batch_id === '').length, 0);
  await screenshot('console-post-errors.png');
});

await step('a good file chosen through the drop zone\'s file input is accepted and stored', async () => {
  await page.setInputFiles('#file-input', goodPath);
  await page.waitForSelector('#post-result.ok h4');
  assert.match(await page.textContent('#post-result h4'), new RegExp(`Accepted: batch “${good.batch_id}” with ${good.objects.length} objects`));
  await eventually(async () => (await apiGet(API, `/api/v1/batches/${good.batch_id}/`)).status === 200, 'the batch stored by the workers');
  // the post view follows the message's receipt until the workers applied it
  await page.waitForSelector('#post-result .receipt[data-state="applied"]');
  assert.match(await page.textContent('#post-result .receipt'), /Receipt: applied by .* to batch .+\./);
  assert.ok(await page.$('#post-result .receipt a[href^="#batch/"]'), 'the receipt links the batch');
  await page.click('#post-result a');
  await page.waitForSelector('#view-batch:not([hidden]) #batch-objects tbody tr');
  assert.equal(await page.textContent('#batch-title'), good.batch_id);
  const ids = await page.$$eval('#batch-objects tbody tr td:first-child', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(ids, good.objects.map((o) => o.object_id));
});

await step('the live view shows every partition with its lag, applied objects and rates', async () => {
  await page.click('#nav a[data-view="live"]');
  await page.waitForSelector(`#live-partitions tbody tr[data-partition]`);
  await eventually(async () => (await page.$$('#live-partitions tbody tr[data-partition]')).length === PARTITIONS, `${PARTITIONS} partition rows`);
  // lag is a number on every row, and goes to 0 once the workers caught up
  await eventually(async () => {
    const lags = await page.$$eval('#live-partitions tbody td.lag', (tds) => tds.map((td) => td.textContent));
    return lags.length === PARTITIONS && lags.every((l) => l === '0');
  }, 'lag 0 on every partition');
  await eventually(async () => /^[1-9][\d,]* objects written$/.test(await page.textContent('#live-applied-total')), 'non-zero applied objects');
  assert.match(await page.textContent('#live-applied-messages'), /^[1-9][\d,]* messages applied$/);
  assert.match(await page.textContent('#live-kafka'), /Kafka: up/);
  // traffic while the view is open: the accepted rate moves above zero
  const extra = { batch_id: 'console-live', objects: [{ object_id: 'console-live-1', data: [{ key: 'type', value: 'live' }] }] };
  const r = await fetch(API + '/api/v1/batches/', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(extra) });
  assert.equal(r.status, 202);
  const rateAbove0 = (id) => async () => {
    const t = await page.textContent(id);
    return t !== '–' && Number(t.replace(/,/g, '')) > 0;
  };
  await eventually(rateAbove0('#live-accepted-rate'), 'an accepted rate above zero');
  // PostgreSQL's counters reach the applied rate once the worker's session flushes them (<= ~10 s)
  await eventually(rateAbove0('#live-applied-rate'), 'an applied rate above zero', 30000);
  await screenshot('console-live.png');
});

if (AUTH_API) {
  await step('with API keys on: a 401 asks for the key, and the page works with it', async () => {
    const p = await context.newPage(); // a new tab: its sessionStorage is empty
    watch(p);
    page = p;
    await p.goto(AUTH_API + '/console/');
    await p.waitForSelector('#key-form:not([hidden])');
    assert.match(await p.textContent('#key-message'), /asks for a key \(401\)/);
    assert.equal((await rowIds('#objects-table')).length, 0);
    await p.fill('#key-input', 'not-the-key');
    await p.click('#key-form button[type="submit"]');
    await eventually(async () => /refused this key/.test(await p.textContent('#key-message')) && !(await p.isHidden('#key-form')), 'the wrong key refused');
    await p.fill('#key-input', AUTH_KEY);
    await p.click('#key-form button[type="submit"]');
    await waitRows('#objects-table', (await apiGet(AUTH_API, '/api/v1/objects/', AUTH_KEY)).body.results.map((o) => o.object_id));
    assert.ok((await rowIds('#objects-table')).length > 0);
    assert.equal(await p.isHidden('#key-form'), true);
    assert.equal(await p.textContent('#key-button'), 'API key: set');
    // the key is kept for this tab: a reload works without asking again, and so does the live view
    await p.reload();
    await p.waitForSelector('#objects-table tbody tr[data-object-id]');
    assert.equal(await p.isHidden('#key-form'), true);
    await p.click('#nav a[data-view="live"]');
    await p.waitForSelector('#live-partitions tbody tr[data-partition]');
  });
}

await step('no unexpected console errors and no request to another origin', async () => {
  assert.deepEqual(unexpectedErrors(), []);
});

await shutdown();
console.log(`# ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, 0 failed`);
