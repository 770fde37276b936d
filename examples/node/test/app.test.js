// Drives the Express app over HTTP with tokens made by the Go signer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { createApp } from '../app.js';
import { createVerifier } from 'caddy-pi-guard-verify';

const vectors = JSON.parse(readFileSync(new URL('../../testdata/vectors.json', import.meta.url), 'utf8'));
const vec = (name) => vectors.cases.find((c) => c.name === name);

let server;
let base;
before(async () => {
  // Configured like production with the secret only; the clock is the vectors'.
  const verifier = createVerifier({ keys: [{ secret: `  ${vectors.secret}\n` }], now: () => vectors.now });
  server = createApp(verifier).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server.close());

// Sends a vector's request (or a variant) and returns [status, json].
async function send(c, { path = c.path, header = c.header, values = c.header_values, body = c.body } = {}) {
  const headers = new Headers({ 'Content-Type': 'application/json' });
  for (const v of values) headers.append(header, v);
  const res = await fetch(base + path, { method: c.method, headers, body });
  return [res.status, await res.json()];
}

async function order(id) {
  const res = await fetch(`${base}/orders`);
  const { orders } = await res.json();
  return orders.find((o) => o.payment_id === id);
}

test('notice => pending; verified => paid once; replay idempotent', async () => {
  const approve = vec('valid-notice-approve');
  let [status] = await send(approve);
  assert.equal(status, 200);
  assert.equal((await order(approve.claims.sub)).status, 'pending');

  // Not paid by anything but a valid verified header.
  for (const name of ['missing', 'notice-as-verified', 'wrong-secret', 'tampered-amount', 'expired', 'wrong-body']) {
    const c = vec(name);
    const [s, body] = await send(c, { path: '/payments/complete' });
    assert.equal(s, 401, name);
    assert.equal(body.error, 'payment_not_verified', name);
    assert.equal((await order(approve.claims.sub)).status, 'pending', name);
  }
  // Two header values (fetch folds them into one line with a comma): refused.
  const complete = vec('valid-complete');
  [status] = await send(complete, { values: [complete.header_values[0], complete.header_values[0]] });
  assert.equal(status, 401);

  let body;
  [status, body] = await send(complete);
  assert.equal(status, 200, JSON.stringify(body));
  assert.equal(body.already_recorded, false);
  const o = await order(complete.claims.sub);
  assert.equal(o.status, 'paid');
  assert.equal(o.txid, complete.claims.txid);

  [status, body] = await send(complete); // redelivery
  assert.equal(status, 200);
  assert.equal(body.already_recorded, true);
  assert.equal((await order(complete.claims.sub)).deliveries, 2);

  // A late cancellation notice does not un-pay.
  [status] = await send(vec('valid-notice-cancel'));
  assert.equal(status, 200);
  assert.equal((await order(complete.claims.sub)).status, 'paid');
});

test('incomplete: verified pays, a failing verified header is not read as a notice', async () => {
  const inc = vec('valid-incomplete');
  const notice = vec('valid-notice-approve');
  let [status] = await send(inc, { header: 'Pi-Payment-Verified', values: notice.header_values });
  assert.equal(status, 401);
  [status] = await send(inc);
  assert.equal(status, 200);
  assert.equal((await order(inc.claims.sub)).status, 'paid');
});

test('pages', async () => {
  let res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /example app behind caddy-pi-guard/);
  res = await fetch(`${base}/payments/cancelled_payment`, { method: 'POST', body: '{}' });
  assert.equal(res.status, 401);
});
