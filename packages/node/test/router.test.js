// The middleware under an Express Router mounted on /payments, the way Pi's
// reference app (pi-apps/demo) mounts its payment routes. Express 4, as there.
const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const express = require('express');
const { createVerifier } = require('caddy-pi-guard-verify');
const { vectors, vec, optionsAt } = require('../testsupport/vectors');
const { listen, send } = require('../testsupport/http');

const verifier = createVerifier(optionsAt(vectors.now));
const echo = (req, res) => res.json({ sub: req.piPayment.sub, kind: req.piPayment.kind, phase: req.piPayment.phase, body: JSON.parse(req.body.toString('utf8') || 'null') });

function paymentsRouter() {
  const router = express.Router();
  router.use(express.raw({ type: () => true, limit: '1mb' }));
  router.post('/approve', verifier.middleware('notice'), echo);
  router.post('/complete', verifier.middleware('verified'), echo);
  router.post('/incomplete', verifier.middleware('verified-or-notice'), echo);
  router.post('/cancelled_payment', verifier.middleware('notice'), echo);
  return router;
}

let server;
before(async () => {
  const app = express();
  app.use('/payments', paymentsRouter());
  // A common mistake: a JSON parser before the verifier.
  app.post('/parsed/complete', express.json(), verifier.middleware('verified'), echo);
  // Its error handler, so the test sees the configuration error's message.
  app.use((err, req, res, next) => res.status(500).json({ error: 'server_error', message: err.message })); // eslint-disable-line no-unused-vars
  server = await listen(app);
});
after(() => server.close());

test('mounted on /payments: each route accepts its header, claims on req.piPayment', async () => {
  for (const [name, kind, phase] of [
    ['valid-notice-approve', 'notice', 'approve'],
    ['valid-complete', 'verified', 'complete'],
    ['valid-incomplete', 'verified', 'incomplete'],
    ['valid-notice-cancel', 'notice', 'cancel'],
  ]) {
    const c = vec(name);
    const res = await send(server.base, c);
    assert.equal(res.status, 200, `${name}: ${JSON.stringify(res.body)}`);
    assert.deepEqual([res.body.sub, res.body.kind, res.body.phase], [c.claims.sub, kind, phase], name);
    assert.deepEqual(res.body.body, JSON.parse(c.body), 'the route still reads the body');
  }
});

test('a query string does not break the binding', async () => {
  const res = await send(server.base, vec('valid-complete'), { path: '/payments/complete?from=wallet' });
  assert.equal(res.status, 200, JSON.stringify(res.body));
});

test('refusals: 401 with the reason, the route is not reached', async () => {
  const cases = [
    ['missing', {}, 'payment_not_verified', /^missing/],
    ['notice-as-verified', { path: '/payments/complete' }, 'payment_not_verified', /^kind/],
    ['wrong-secret', {}, 'payment_not_verified', /^signature/],
    ['expired', {}, 'payment_not_verified', /^expired/],
    ['wrong-body', {}, 'payment_not_verified', /^binding/],
    ['valid-complete', { path: '/payments/approve', header: 'Pi-Payment-Notice' }, 'notice_not_verified', /^kind/],
    ['valid-notice-approve', { path: '/payments/cancelled_payment' }, 'notice_not_verified', /^binding/],
  ];
  for (const [name, change, error, message] of cases) {
    const res = await send(server.base, vec(name), change);
    assert.equal(res.status, 401, name);
    assert.equal(res.body.error, error, name);
    assert.match(res.body.message, message, name);
  }
  const complete = vec('valid-complete');
  // fetch folds two values into one line with a comma: refused as well.
  const twice = await send(server.base, complete, { values: [complete.header_values[0], complete.header_values[0]] });
  assert.equal(twice.status, 401);
  assert.match(twice.body.message, /^malformed/);
});

test('incomplete: a failing verified header is refused, never read as a notice', async () => {
  const inc = vec('valid-incomplete');
  const notice = vec('valid-notice-approve');
  // A notice copied into Pi-Payment-Verified: refused as verified.
  let res = await send(server.base, inc, { header: 'Pi-Payment-Verified', values: notice.header_values });
  assert.equal(res.status, 401);
  assert.equal(res.body.error, 'payment_not_verified');
  // No verified header: the notice is checked (here bound to /payments/approve, so refused as a notice).
  res = await send(server.base, inc, { header: 'Pi-Payment-Notice', values: notice.header_values });
  assert.equal(res.status, 401);
  assert.equal(res.body.error, 'notice_not_verified');
});

test('a JSON parser before the verifier is a configuration error that says what to do', async () => {
  const res = await send(server.base, vec('valid-complete'), { path: '/parsed/complete' });
  assert.equal(res.status, 500);
  assert.match(res.body.message, /express\.raw\(\{ type: \(\) => true \}\)/);
});

test('express.raw with its default type reads no JSON body: the same error, not a silent refusal', async () => {
  const app = express();
  const router = express.Router();
  router.post('/complete', express.raw(), verifier.middleware('verified'), echo);
  app.use('/payments', router);
  app.use((err, req, res, next) => res.status(500).json({ message: err.message })); // eslint-disable-line no-unused-vars
  const s = await listen(app);
  try {
    const res = await send(s.base, vec('valid-complete'));
    assert.equal(res.status, 500);
    assert.match(res.body.message, /not the raw body bytes/);
    // With the type it reads, the same request passes.
    const ok = await send(s.base, vec('valid-complete'), { contentType: 'application/octet-stream' });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  } finally {
    await s.close();
  }
});

test('an empty body verifies with and without Content-Length', async () => {
  const c = vec('valid-empty-body');
  const res = await send(server.base, c);
  assert.equal(res.status, 200, JSON.stringify(res.body));
});

test('the header on two lines is refused (rule 1)', async () => {
  const http = require('node:http');
  const c = vec('valid-complete');
  const url = new URL(`${server.base}/payments/complete`);
  const { status, body } = await new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      // An array keeps the two lines apart; it gets no Host or Content-Length by itself.
      headers: ['Host', url.host, 'Content-Type', 'application/json', 'Content-Length', String(Buffer.byteLength(c.body)),
        'Pi-Payment-Verified', c.header_values[0], 'Pi-Payment-Verified', c.header_values[0]],
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(c.body);
  });
  assert.equal(status, 401);
  assert.match(body.message, /appears 2 times/);
});

test('the reference app\'s app-wide express.json(): express.raw on /payments before it keeps the raw body', async () => {
  const app = express();
  app.use('/payments', express.raw({ type: () => true, limit: '1mb' })); // the one line docs/migration.md adds
  app.use(express.json()); // as pi-apps/demo backend/src/index.ts has it, for every other route
  const router = express.Router();
  router.post('/complete', verifier.middleware('verified'), echo);
  app.use('/payments', router);
  const s = await listen(app);
  try {
    const res = await send(s.base, vec('valid-complete'));
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.sub, vec('valid-complete').claims.sub);
  } finally {
    await s.close();
  }
});
