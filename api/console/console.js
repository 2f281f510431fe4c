/* console.js - the batchpipe web console (index.html): a small hash-routed page on the JSON API.
 * Views: #objects?<query> (list and filter), #object/<id>, #batches?<query>, #batch/<id>, #post (drop
 * a batch file), #live (GET /api/v1/stats/ every 2 s). No framework, no build step; data reaches the
 * page only through textContent (never as HTML). The API key, when the API asks for one (401), is kept
 * in sessionStorage and sent as "Authorization: Bearer". */
'use strict';

(function () {
  const KEY_STORAGE = 'batchpipe.apiKey';
  const LIVE_INTERVAL_MS = 2000;
  const RATE_WINDOW = 4; /* samples (about 6 s) a rate is measured over: PostgreSQL's counters move in steps */
  const CHIPS_SHOWN = 6;
  const numberFormat = new Intl.NumberFormat('en-US');
  const rateFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 0 });

  const $ = (id) => document.getElementById(id);

  /* ---------------------------------------------------------------------------------------------
   * Small DOM helpers: elements built from data, never from HTML strings.
   */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function fmt(n) {
    return n === null || n === undefined ? '–' : numberFormat.format(n);
  }

  /* "2024-05-01T12:00:00.123456Z" -> "2024-05-01 12:00:00" */
  function when(ts) {
    return typeof ts === 'string' ? ts.replace('T', ' ').replace(/\.\d+Z$/, '').replace(/Z$/, '') : '';
  }

  /* ---------------------------------------------------------------------------------------------
   * Notices and the confirmation dialog.
   */
  let noticeTimer = null;
  let noticeAt = 0;
  function notice(text, isError) {
    noticeAt = Date.now();
    const n = $('notice');
    n.textContent = text;
    n.className = isError ? 'error' : '';
    n.hidden = false;
    clearTimeout(noticeTimer);
    if (!isError) noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
  }
  function clearNotice() {
    $('notice').hidden = true;
  }

  /* Resolves true when the user confirms. */
  function confirmAction(text, okLabel) {
    const d = $('confirm-dialog');
    $('confirm-text').textContent = text;
    $('confirm-ok').textContent = okLabel || 'Delete';
    d.returnValue = '';
    return new Promise((resolve) => {
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
      $('confirm-cancel').focus();
    });
  }

  /* ---------------------------------------------------------------------------------------------
   * The API: every call carries the key when one is set; a 401 opens the key form.
   */
  class ApiError extends Error {
    constructor(status, message, problem) {
      super(message);
      this.status = status;
      this.problem = problem || null;
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || '';
  }

  function showKeyState() {
    $('key-button').textContent = apiKey() ? 'API key: set' : 'API key: none';
  }

  let retryAfterKey = null; /* what to run again once a key is entered */

  function askForKey(message, retry) {
    retryAfterKey = retry || retryAfterKey;
    $('key-message').textContent = message;
    $('key-form').hidden = false;
    $('key-input').focus();
  }

  /* fetch a path of the API; returns {status, data, headers}. Throws ApiError on a 401, a network
   * failure, or (unless options.allow includes the status) any status >= 400. */
  async function api(method, path, options) {
    options = options || {};
    const headers = { Accept: 'application/json' };
    const key = apiKey();
    if (key) headers.Authorization = 'Bearer ' + key;
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: options.body, cache: 'no-store', credentials: 'omit' });
    } catch (e) {
      throw new ApiError(0, 'The API cannot be reached (' + e.message + ').');
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (res.status === 401) {
      askForKey(key ? 'The API refused this key (401): enter another one.'
                    : 'This API asks for a key (401): enter one to continue.', options.retry);
      throw new ApiError(401, 'An API key is needed.', data);
    }
    if (res.status >= 400 && !(options.allow || []).includes(res.status)) {
      const detail = data && (data.detail || data.title) ? (data.detail || data.title) : res.statusText;
      throw new ApiError(res.status, res.status + ': ' + detail, data);
    }
    return { status: res.status, data, headers: res.headers };
  }

  /* A failed call's message goes to the notice (a 401 already shows the key form). */
  function failed(e) {
    if (e instanceof ApiError && e.status === 401) return;
    notice(e.message || String(e), true);
  }

  /* The path and query of a next/previous link (absolute URLs built from the Host header or
   * BP_PUBLIC_URL): the page always calls its own origin. */
  function localPath(url) {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  }

  /* ---------------------------------------------------------------------------------------------
   * Data cells: pairs as chips; a click on a chip adds it to the filter.
   */
  function valueText(v) {
    return typeof v === 'string' ? v : JSON.stringify(v);
  }

  /* What to type in a filter box to match v exactly (see parseValue). */
  function valueInput(v) {
    if (typeof v !== 'string') return JSON.stringify(v);
    return parseValue(v).typed ? JSON.stringify(v) : v;
  }

  function chips(data) {
    const box = el('div', { class: 'chips' });
    const pairs = Array.isArray(data) ? data : [];
    pairs.slice(0, CHIPS_SHOWN).forEach((p) => {
      const typed = typeof p.value !== 'string';
      box.append(el('span', {
        class: 'chip',
        title: 'Filter by ' + p.key + ' = ' + valueText(p.value),
        onclick: (ev) => { ev.preventDefault(); ev.stopPropagation(); addFilterPair(p.key, p.value); },
      }, el('span', { class: 'k', text: p.key + ' ' }), el('span', { class: typed ? 'typed' : '', text: valueText(p.value) })));
    });
    if (pairs.length > CHIPS_SHOWN) box.append(el('span', { class: 'chip more', text: '+' + (pairs.length - CHIPS_SHOWN) + ' more' }));
    return box;
  }

  function objectLink(id) {
    return el('a', { class: 'id', href: '#object/' + encodeURIComponent(id), text: id });
  }

  function batchLink(id) {
    return el('a', { class: 'id', href: '#batch/' + encodeURIComponent(id), text: id });
  }

  function emptyRow(table, cols, text) {
    clear(table.tBodies[0]).append(el('tr', {}, el('td', { class: 'empty', colspan: String(cols), text })));
  }

  /* ---------------------------------------------------------------------------------------------
   * Deleting, with confirmation.
   */
  async function deleteObject(id, after) {
    if (!(await confirmAction('Delete the object “' + id + '”? This cannot be undone.', 'Delete object'))) return;
    try {
      const r = await api('DELETE', '/api/v1/objects/' + encodeURIComponent(id) + '/', { allow: [404] });
      notice(r.status === 404 ? 'The object “' + id + '” was already gone.' : 'Deleted the object “' + id + '”.');
      after();
    } catch (e) {
      failed(e);
    }
  }

  async function deleteBatch(id, count) {
    const what = count > 0 ? ' and its ' + fmt(count) + (count === 1 ? ' object' : ' objects') : '';
    if (!(await confirmAction('Delete the batch “' + id + '”' + what + '? This cannot be undone.', 'Delete batch'))) return;
    try {
      const r = await api('DELETE', '/api/v1/batches/' + encodeURIComponent(id) + '/?cascade=true', { allow: [404] });
      notice(r.status === 404 ? 'The batch “' + id + '” was already gone.' : 'Deleted the batch “' + id + '”' + what + '.');
      location.hash = '#batches';
    } catch (e) {
      failed(e);
    }
  }

  /* ---------------------------------------------------------------------------------------------
   * Objects: filters (data={...}, batch_id, page_size) kept in the hash, so back/forward and reload work.
   */

  /* A filter value box: 42, true, false, null and "quoted" are JSON; anything else is the string. */
  function parseValue(text) {
    const t = text.trim();
    if (t === text && (/^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(t) || t === 'true' || t === 'false' || t === 'null' ||
                       /^".*"$/.test(t))) {
      try { return { value: JSON.parse(t), typed: true }; } catch (e) { /* not JSON after all */ }
    }
    return { value: text, typed: false };
  }

  function pairRow(key, value) {
    const row = el('div', { class: 'pair' },
      el('input', { class: 'pair-key', placeholder: 'key', value: key || '', spellcheck: 'false', 'aria-label': 'key' }),
      el('span', { class: 'eq', text: '=' }),
      el('input', { class: 'pair-value', placeholder: 'value', value: value || '', spellcheck: 'false', 'aria-label': 'value' }),
      el('button', { type: 'button', title: 'Remove this pair', 'aria-label': 'remove pair', text: '×' }));
    row.querySelector('button').addEventListener('click', () => {
      row.remove();
      if (!$('pairs').children.length) $('pairs').append(pairRow());
    });
    return row;
  }

  /* The query for the objects list from the form (no cursor: a new filter starts at the first page). */
  function queryFromForm() {
    const q = new URLSearchParams();
    const data = {};
    let n = 0;
    for (const row of $('pairs').children) {
      const k = row.querySelector('.pair-key').value;
      const v = row.querySelector('.pair-value').value;
      if (k === '') continue;
      data[k] = parseValue(v).value;
      n++;
    }
    if (n) q.set('data', JSON.stringify(data));
    const batch = $('filter-batch').value.trim();
    if (batch) q.set('batch_id', batch);
    const size = $('page-size').value;
    if (size !== '10') q.set('page_size', size);
    return q;
  }

  function formFromQuery(q) {
    const pairs = clear($('pairs'));
    let data = {};
    try { data = q.get('data') ? JSON.parse(q.get('data')) : {}; } catch (e) { data = {}; }
    for (const [k, v] of Object.entries(data && typeof data === 'object' ? data : {})) pairs.append(pairRow(k, valueInput(v)));
    if (!pairs.children.length) pairs.append(pairRow());
    $('filter-batch').value = q.get('batch_id') || '';
    const size = q.get('page_size') || '10';
    $('page-size').value = [...$('page-size').options].some((o) => o.value === size) ? size : '10';
  }

  function addFilterPair(key, value) {
    const q = new URLSearchParams(location.hash.startsWith('#objects?') ? location.hash.slice(9) : '');
    let data = {};
    try { data = q.get('data') ? JSON.parse(q.get('data')) : {}; } catch (e) { data = {}; }
    data[key] = value;
    q.set('data', JSON.stringify(data));
    q.delete('cursor');
    q.delete('page');
    location.hash = '#objects?' + q.toString();
  }

  let objectsPage = { next: null, previous: null };

  async function showObjects(query) {
    const q = new URLSearchParams(query);
    formFromQuery(q);
    const table = $('objects-table');
    $('objects-summary').textContent = 'Loading…';
    try {
      const r = await api('GET', '/api/v1/objects/?' + q.toString(), { retry: () => showObjects(query) });
      const page = r.data;
      objectsPage = page;
      const body = clear(table.tBodies[0]);
      for (const o of page.results) {
        body.append(el('tr', { 'data-object-id': o.object_id },
          el('td', {}, objectLink(o.object_id)),
          el('td', {}, batchLink(o.batch_id)),
          el('td', {}, chips(o.data)),
          el('td', { class: 'time', text: when(o.updated_at) }),
          el('td', { class: 'actions' }, el('button', {
            type: 'button', class: 'danger small', text: 'Delete', title: 'Delete this object',
            onclick: () => deleteObject(o.object_id, () => showObjects(query)),
          }))));
      }
      if (!page.results.length) emptyRow(table, 5, q.has('data') || q.has('batch_id') ? 'No object matches this filter.' : 'No objects yet.');
      const count = page.count === null ? 'an unknown number of' : (page.count_exact ? '' : 'about ') + fmt(page.count);
      $('objects-summary').textContent = count + (page.count === 1 ? ' object' : ' objects') +
        (q.has('data') || q.has('batch_id') ? ' match' + (page.count === 1 ? 'es' : '') : '') +
        '; showing ' + fmt(page.results.length) + '.';
      $('objects-prev').disabled = !page.previous;
      $('objects-next').disabled = !page.next;
    } catch (e) {
      $('objects-summary').textContent = '';
      emptyRow(table, 5, e.status === 401 ? 'An API key is needed.' : e.message);
      $('objects-prev').disabled = $('objects-next').disabled = true;
      failed(e);
    }
  }

  function followObjectsPage(url) {
    if (!url) return;
    const path = localPath(url);
    location.hash = '#objects?' + path.slice(path.indexOf('?') + 1);
  }

  /* ---------------------------------------------------------------------------------------------
   * One object.
   */
  async function showObject(id) {
    $('object-title').textContent = id;
    const meta = clear($('object-meta'));
    clear($('object-pairs').tBodies[0]);
    $('object-json').textContent = '';
    $('object-delete').disabled = true;
    try {
      const r = await api('GET', '/api/v1/objects/' + encodeURIComponent(id) + '/', { allow: [404], retry: () => showObject(id) });
      if (r.status === 404) {
        meta.append(el('dt', { text: 'Status' }), el('dd', { text: 'There is no object with this id (deleted, or not applied yet).' }));
        return;
      }
      const o = r.data;
      meta.append(el('dt', { text: 'Batch' }), el('dd', {}, batchLink(o.batch_id)),
        el('dt', { text: 'Created' }), el('dd', { text: when(o.created_at) + ' UTC' }),
        el('dt', { text: 'Updated' }), el('dd', { text: when(o.updated_at) + ' UTC' }),
        el('dt', { text: 'Pairs' }), el('dd', { text: fmt((o.data || []).length) }));
      const body = $('object-pairs').tBodies[0];
      (o.data || []).forEach((p, i) => {
        body.append(el('tr', {},
          el('td', { text: String(i) }),
          el('td', { class: 'id', text: p.key }),
          el('td', {}, el('span', { class: 'chip', title: 'Filter by this pair', onclick: () => addFilterPair(p.key, p.value) },
            el('span', { class: typeof p.value === 'string' ? '' : 'typed', text: valueText(p.value) }))),
          el('td', { class: 'type', text: p.value === null ? 'null' : typeof p.value })));
      });
      $('object-json').textContent = JSON.stringify(o, null, 2);
      $('object-delete').disabled = false;
      $('object-delete').onclick = () => deleteObject(o.object_id, () => { location.hash = '#objects'; });
    } catch (e) {
      failed(e);
    }
  }

  /* ---------------------------------------------------------------------------------------------
   * Batches.
   */
  let batchesPage = { next: null, previous: null };

  async function showBatches(query) {
    const q = new URLSearchParams(query);
    const table = $('batches-table');
    $('batches-summary').textContent = 'Loading…';
    try {
      const r = await api('GET', '/api/v1/batches/?' + q.toString(), { retry: () => showBatches(query) });
      const page = r.data;
      batchesPage = page;
      const body = clear(table.tBodies[0]);
      for (const b of page.results) {
        body.append(el('tr', { 'data-batch-id': b.batch_id },
          el('td', {}, batchLink(b.batch_id)),
          el('td', { class: 'num', text: fmt(b.object_count) }),
          el('td', { class: 'time', text: when(b.created_at) }),
          el('td', { class: 'time', text: when(b.updated_at) })));
      }
      if (!page.results.length) emptyRow(table, 4, 'No batches yet.');
      const count = page.count === null ? 'An unknown number of' : (page.count_exact ? '' : 'about ') + fmt(page.count);
      $('batches-summary').textContent = count + (page.count === 1 ? ' batch' : ' batches') + '; showing ' + fmt(page.results.length) + '.';
      $('batches-prev').disabled = !page.previous;
      $('batches-next').disabled = !page.next;
    } catch (e) {
      $('batches-summary').textContent = '';
      emptyRow(table, 4, e.status === 401 ? 'An API key is needed.' : e.message);
      failed(e);
    }
  }

  async function showBatch(id) {
    $('batch-title').textContent = id;
    const meta = clear($('batch-meta'));
    const table = $('batch-objects');
    clear(table.tBodies[0]);
    $('batch-delete').disabled = true;
    $('batch-browse').href = '#objects?' + new URLSearchParams({ batch_id: id }).toString();
    try {
      const r = await api('GET', '/api/v1/batches/' + encodeURIComponent(id) + '/', { allow: [404], retry: () => showBatch(id) });
      if (r.status === 404) {
        meta.append(el('dt', { text: 'Status' }), el('dd', { text: 'There is no batch with this id (deleted, or not applied yet).' }));
        return;
      }
      const b = r.data;
      meta.append(el('dt', { text: 'Objects' }), el('dd', { text: fmt(b.object_count) }),
        el('dt', { text: 'Created' }), el('dd', { text: when(b.created_at) + ' UTC' }),
        el('dt', { text: 'Updated' }), el('dd', { text: when(b.updated_at) + ' UTC' }));
      const objects = b.objects || [];
      $('batch-objects-title').textContent = objects.length < b.object_count
        ? 'First ' + fmt(objects.length) + ' of ' + fmt(b.object_count) + ' objects' : 'Objects';
      for (const o of objects) {
        table.tBodies[0].append(el('tr', {},
          el('td', {}, objectLink(o.object_id)), el('td', {}, chips(o.data)), el('td', { class: 'time', text: when(o.updated_at) })));
      }
      if (!objects.length) emptyRow(table, 3, 'This batch has no objects.');
      $('batch-delete').disabled = false;
      $('batch-delete').onclick = () => deleteBatch(b.batch_id, b.object_count);
    } catch (e) {
      failed(e);
    }
  }

  /* ---------------------------------------------------------------------------------------------
   * Posting a batch file: dropped on the zone, or chosen with the file input the zone opens.
   */

  /* The value at a JSON pointer ("/objects/1/data/0/key") of doc, or undefined. */
  function atPointer(doc, pointer) {
    if (typeof pointer !== 'string' || (pointer !== '' && !pointer.startsWith('/'))) return undefined;
    let node = doc;
    for (const raw of pointer === '' ? [] : pointer.slice(1).split('/')) {
      const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (node === null || typeof node !== 'object' || !(part in node)) return undefined;
      node = node[part];
    }
    return node;
  }

  function shortJson(v) {
    const s = JSON.stringify(v);
    return s === undefined ? '' : s.length > 80 ? s.slice(0, 77) + '…' : s;
  }

  let lastFile = null;
  let receiptRun = 0; /* each post follows its own receipt; a newer post stops the older one's */

  /* Follow a message's receipt (GET /api/v1/receipts/{token}/) into line until the workers applied or
   * dead-lettered it: about every second at first, slower later, for at most ten minutes. */
  async function followReceipt(token, line) {
    const run = ++receiptRun;
    const started = Date.now();
    for (let delay = 500; run === receiptRun && Date.now() - started < 600000; delay = Math.min(delay * 1.5, 5000)) {
      let r;
      try {
        r = await api('GET', '/api/v1/receipts/' + encodeURIComponent(token) + '/', { allow: [400, 404, 429, 503] });
      } catch (e) {
        r = null;
      }
      if (run !== receiptRun) return;
      const b = r && r.status === 200 ? r.data : null;
      if (b) {
        line.dataset.state = b.state;
        if (b.state === 'accepted') {
          clear(line).append('Receipt: in the topic, not applied yet (' + fmt(b.ahead) + ' before it on partition ' + b.partition + ').');
        } else if (b.state === 'applied') {
          clear(line).append('Receipt: applied by ' + b.group_id);
          /* the batch as this message left it: still its version, replaced by a later one, or deleted */
          if (b.batch_id && b.batch_state === 'deleted') line.append(' to batch ', el('code', { text: b.batch_id }), ', deleted since');
          else if (b.batch_id) line.append(' to batch ', batchLink(b.batch_id), b.batch_state === 'superseded' ? ', replaced since by a later post' : b.batch_state === 'changed' ? ', changed since' : '');
          line.append('.');
          return;
        } else if (b.state === 'dead_lettered') {
          const d = b.dead_letter || {};
          line.className = 'receipt bad';
          clear(line).append('Receipt: dead-lettered — ' + (d.reason || '') + (d.sqlstate ? ' (SQLSTATE ' + d.sqlstate + ')' : '') + '. Letter ' +
            d.partition + ':' + d.offset + ' in ' + d.topic + '; once fixed: ', el('code', { text: d.replay || '' }));
          return;
        } else {
          clear(line).append('Receipt: ' + b.state + (b.detail ? ' — ' + b.detail : ''));
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async function postFile(file) {
    lastFile = file;
    receiptRun++; /* stop following the previous post's receipt */
    const out = $('post-result');
    const zone = $('drop-zone');
    zone.classList.add('busy');
    out.hidden = false;
    out.className = 'post-result';
    clear(out).append(el('p', { class: 'file', text: 'Sending ' + file.name + ' (' + fmt(file.size) + ' bytes)…' }));
    let text;
    try {
      text = await file.text();
    } catch (e) {
      zone.classList.remove('busy');
      out.className = 'post-result bad';
      clear(out).append(el('h4', { text: 'Cannot read ' + file.name }), el('p', { text: String(e.message || e) }));
      return;
    }
    let doc;
    try { doc = JSON.parse(text); } catch (e) { doc = undefined; }
    try {
      const r = await api('POST', '/api/v1/batches/', { body: text, allow: [400, 413, 415, 422, 429, 503], retry: () => postFile(file) });
      clear(out);
      const fileLine = el('p', { class: 'file', text: file.name + ' · ' + fmt(file.size) + ' bytes' });
      if (r.status === 202 || r.status === 201) {
        const a = r.data;
        out.className = 'post-result ok';
        out.append(el('h4', { text: 'Accepted: batch “' + a.batch_id + '” with ' + fmt(a.objects) + (a.objects === 1 ? ' object' : ' objects') }),
          fileLine,
          el('p', {}, 'Stored in partition ' + a.partition + ' at offset ' + fmt(a.offset) + '; the workers apply it within moments. ',
            el('a', { href: '#batch/' + encodeURIComponent(a.batch_id), text: 'Open the batch' })));
        if (a.token) {
          const line = el('p', { class: 'receipt', text: 'Receipt: asking…' });
          out.append(line);
          followReceipt(a.token, line);
        }
      } else {
        const p = r.data || {};
        const errors = Array.isArray(p.errors) ? p.errors : [];
        out.className = 'post-result bad';
        out.append(el('h4', { text: 'Refused (' + r.status + ' ' + (p.title || '') + ')' }), fileLine);
        if (p.detail && !(errors.length === 1 && p.detail.endsWith(errors[0].message))) out.append(el('p', { class: 'detail', text: p.detail }));
        if (errors.length) {
          const list = el('ul', { class: 'errors' });
          for (const err of errors) {
            const found = doc !== undefined ? atPointer(doc, err.pointer) : undefined;
            list.append(el('li', {},
              el('span', { class: 'pointer', text: err.pointer || '(the document)' }),
              el('span', { class: 'message', text: err.message }),
              found !== undefined && err.pointer ? el('span', { class: 'found' }, 'in the file: ', el('code', { text: shortJson(found) })) : null));
          }
          out.append(list);
          if (p.errors_total > errors.length) out.append(el('p', { class: 'hint', text: 'Only the first ' + errors.length + ' of ' + p.errors_total + ' problems are listed.' }));
        }
      }
    } catch (e) {
      out.className = 'post-result bad';
      clear(out).append(el('h4', { text: e.status === 401 ? 'An API key is needed to post.' : 'Not sent' }),
        el('p', { text: e.status === 401 ? 'Enter a key above; the file is sent again with it.' : e.message }));
    } finally {
      zone.classList.remove('busy');
    }
  }

  function setupDropZone() {
    const zone = $('drop-zone');
    const input = $('file-input');
    const stop = (ev) => { ev.preventDefault(); ev.stopPropagation(); };
    ['dragenter', 'dragover'].forEach((t) => zone.addEventListener(t, (ev) => {
      stop(ev);
      if (ev.dataTransfer) ev.dataTransfer.dropEffect = 'copy';
      zone.classList.add('over');
    }));
    zone.addEventListener('dragleave', (ev) => { stop(ev); zone.classList.remove('over'); });
    zone.addEventListener('drop', (ev) => {
      stop(ev);
      zone.classList.remove('over');
      const files = ev.dataTransfer ? ev.dataTransfer.files : null;
      if (!files || !files.length) {
        notice('Drop a file (a JSON batch), not text.', true);
        return;
      }
      if (files.length > 1) notice('Only the first of the ' + files.length + ' dropped files is sent.', true);
      postFile(files[0]);
    });
    $('choose-file').addEventListener('click', () => input.click());
    zone.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { stop(ev); input.click(); } });
    input.addEventListener('change', () => {
      if (input.files.length) postFile(input.files[0]);
      input.value = '';
    });
    /* a file dropped beside the zone must not make the browser leave the page to show it */
    ['dragover', 'drop'].forEach((t) => window.addEventListener(t, (ev) => { if (!zone.contains(ev.target)) ev.preventDefault(); }));
  }

  /* ---------------------------------------------------------------------------------------------
   * Live view: GET /api/v1/stats/ every 2 s while the view is shown and the page visible; rates from
   * successive samples.
   */
  let liveTimer = null;
  let liveSamples = [];

  function appliedObjects(s) {
    const a = s.applied || {};
    return a.objects_inserted === null || a.objects_inserted === undefined ? null : a.objects_inserted + (a.objects_updated || 0);
  }

  function appliedMessages(s) {
    const parts = (s.topic && s.topic.partitions) || [];
    return parts.reduce((sum, p) => sum + (p.applied || 0), 0);
  }

  function rate(pick) {
    const ok = liveSamples.filter((s) => pick(s) !== null);
    if (ok.length < 2) return null;
    const a = ok[0];
    const b = ok[ok.length - 1];
    const dt = (b.timestamp_ms - a.timestamp_ms) / 1000;
    return dt > 0 ? Math.max(0, pick(b) - pick(a)) / dt : null;
  }

  function pill(node, name, status, detail) {
    node.className = 'pill ' + status;
    node.textContent = name + ': ' + status;
    node.title = detail || '';
  }

  function renderLive(s) {
    liveSamples.push(s);
    if (liveSamples.length > RATE_WINDOW) liveSamples.shift();
    const accRate = rate((x) => x.accepted.objects);
    const appRate = rate(appliedObjects);
    $('live-accepted-rate').textContent = accRate === null ? '–' : rateFormat.format(accRate);
    $('live-accepted-total').textContent = fmt(s.accepted.objects) + ' objects in ' + fmt(s.accepted.batches) + ' batches';
    $('live-applied-rate').textContent = appRate === null ? '–' : rateFormat.format(appRate);
    const applied = appliedObjects(s);
    $('live-applied-total').textContent = applied === null ? 'database unavailable' : fmt(applied) + ' objects written';
    $('live-lag').textContent = fmt(s.topic.lag);
    $('live-applied-messages').textContent = fmt(appliedMessages(s)) + ' messages applied';
    $('live-dead').textContent = fmt(s.dead_letters.count);
    $('live-dlq-topic').textContent = s.dead_letters.topic;
    $('live-live').textContent = fmt(s.applied.objects_live);
    $('live-topic').textContent = s.topic.name;
    const k = s.kafka;
    pill($('live-kafka'), 'Kafka', k.status, k.detail);
    if (k.age_ms !== null) $('live-kafka').textContent += ' · ' + rateFormat.format(k.age_ms / 1000) + ' s old';
    pill($('live-database'), 'PostgreSQL', s.database.status, s.database.detail);
    $('live-updated').textContent = 'updated ' + new Date(s.timestamp_ms).toLocaleTimeString('en-GB');

    const table = $('live-partitions');
    const body = clear(table.tBodies[0]);
    const parts = s.topic.partitions || [];
    const maxLag = Math.max(1, ...parts.map((p) => p.lag || 0));
    for (const p of parts) {
      const bar = el('div', { class: 'bar' + (p.lag === 0 ? ' zero' : '') }, el('span'));
      bar.firstChild.style.width = p.lag === null ? '0' : (p.lag === 0 ? 100 : Math.max(2, (100 * p.lag) / maxLag)) + '%';
      body.append(el('tr', { 'data-partition': String(p.partition) },
        el('td', { text: String(p.partition) }),
        el('td', { class: 'num', text: fmt(p.high) }),
        el('td', { class: 'num', text: fmt(p.applied) }),
        el('td', { class: 'num lag', text: fmt(p.lag) }),
        el('td', {}, bar)));
    }
    if (!parts.length) emptyRow(table, 5, k.status === 'starting' ? 'Asking the broker…' : 'No partition known (' + (k.detail || 'Kafka unavailable') + ').');
  }

  async function pollLive() {
    liveTimer = null;
    if (currentView !== 'live' || document.visibilityState !== 'visible') return;
    try {
      const r = await api('GET', '/api/v1/stats/', { retry: startLive });
      if (currentView !== 'live') return;
      renderLive(r.data);
    } catch (e) {
      failed(e);
      if (e.status === 401) return; /* until a key is entered */
    }
    if (currentView === 'live' && liveTimer === null) liveTimer = setTimeout(pollLive, LIVE_INTERVAL_MS);
  }

  function startLive() {
    if (liveTimer !== null) clearTimeout(liveTimer);
    liveTimer = null;
    pollLive();
  }

  function stopLive() {
    if (liveTimer !== null) clearTimeout(liveTimer);
    liveTimer = null;
  }

  document.addEventListener('visibilitychange', () => {
    if (currentView !== 'live') return;
    if (document.visibilityState === 'visible') {
      liveSamples = []; /* a gap: rates start over */
      startLive();
    } else {
      stopLive();
    }
  });

  /* ---------------------------------------------------------------------------------------------
   * Routing on the hash.
   */
  let currentView = null;

  function show(view) {
    for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + view;
    const nav = { object: 'objects', batch: 'batches' }[view] || view;
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === nav);
    if (view !== 'live') stopLive();
    currentView = view;
  }

  function route() {
    /* a notice belongs to the view it was given in, or to the move an action just made */
    if (Date.now() - noticeAt > 500) clearNotice();
    const hash = location.hash.replace(/^#/, '') || 'objects';
    const slash = hash.indexOf('/');
    const q = hash.indexOf('?');
    const name = hash.slice(0, slash >= 0 ? slash : q >= 0 ? q : hash.length);
    const rest = slash >= 0 ? hash.slice(slash + 1) : '';
    const query = q >= 0 ? hash.slice(q + 1) : '';
    let id = '';
    try { id = decodeURIComponent(rest); } catch (e) { id = rest; }
    switch (name) {
    case 'object': show('object'); retryAfterKey = () => showObject(id); showObject(id); break;
    case 'batches': show('batches'); retryAfterKey = () => showBatches(query); showBatches(query); break;
    case 'batch': show('batch'); retryAfterKey = () => showBatch(id); showBatch(id); break;
    case 'post': show('post'); retryAfterKey = () => { if (lastFile) postFile(lastFile); }; break;
    case 'live': show('live'); liveSamples = []; retryAfterKey = startLive; startLive(); break;
    default: show('objects'); retryAfterKey = () => showObjects(query); showObjects(query); break;
    }
    /* the view for this hash is set up (its form filled; its data may still be loading) */
    document.body.dataset.route = location.hash || '#objects';
  }

  /* ---------------------------------------------------------------------------------------------
   * Wiring.
   */
  function setup() {
    $('filter-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      clearNotice();
      const target = '#objects?' + queryFromForm().toString();
      if (location.hash === target) route(); else location.hash = target;
    });
    $('add-pair').addEventListener('click', () => {
      const row = pairRow();
      $('pairs').append(row);
      row.querySelector('.pair-key').focus();
    });
    $('filter-clear').addEventListener('click', () => { location.hash = '#objects'; });
    $('objects-next').addEventListener('click', () => followObjectsPage(objectsPage.next));
    $('objects-prev').addEventListener('click', () => followObjectsPage(objectsPage.previous));
    const followBatches = (url) => {
      if (!url) return;
      const path = localPath(url);
      location.hash = '#batches?' + path.slice(path.indexOf('?') + 1);
    };
    $('batches-next').addEventListener('click', () => followBatches(batchesPage.next));
    $('batches-prev').addEventListener('click', () => followBatches(batchesPage.previous));

    $('key-button').addEventListener('click', () => {
      const form = $('key-form');
      if (form.hidden) askForKey(apiKey() ? 'A key is set for this tab: replace or forget it.' : 'No key is set: the API may not need one.');
      else form.hidden = true;
    });
    $('key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      $('key-input').value = '';
      $('key-form').hidden = true;
      showKeyState();
      clearNotice();
      const retry = retryAfterKey;
      if (retry) retry();
    });
    $('key-forget').addEventListener('click', () => {
      sessionStorage.removeItem(KEY_STORAGE);
      $('key-input').value = '';
      $('key-form').hidden = true;
      showKeyState();
      notice('The key is forgotten.');
    });

    /* moving on through the menu dismisses a notice at once */
    $('nav').addEventListener('click', () => { noticeAt = 0; });
    setupDropZone();
    showKeyState();
    window.addEventListener('hashchange', route);
    route();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', setup);
  else setup();
})();
