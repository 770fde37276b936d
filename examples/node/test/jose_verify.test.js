// The jose lines of docs/header.md (jose_verify.js) over the shared vectors,
// and under a Router mounted on /payments.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import express from 'express';
import { verifyPaid } from '../jose_verify.js';

const vectors = JSON.parse(readFileSync(new URL('../../testdata/vectors.json', import.meta.url), 'utf8'));
const at = (c) => ({ currentDate: new Date((c.now || vectors.now) * 1000) });
// An Express request as the payment Router sees it, mounted on /payments.
const requestOf = (c) => ({
  method: c.method,
  originalUrl: c.path,
  path: c.path.replace(/^\/payments/, ''),
  headersDistinct: { 'pi-payment-verified': c.header === 'Pi-Payment-Verified' ? c.header_values : [] },
  body: Buffer.from(c.body, 'utf8'),
});

// Configured with the secret alone (no kid), as docs/header.md shows: a token
// signed with it under any kid verifies (rule 2), so unknown-kid is valid here.
const skip = new Set(['unknown-kid']);
for (const c of vectors.cases.filter((x) => x.header === 'Pi-Payment-Verified' && !x.payment_id && !skip.has(x.name))) {
  test(c.name, async () => {
    if (c.expect === 'valid') {
      assert.equal((await verifyPaid(requestOf(c), vectors.secret, at(c))).sub, c.claims.sub);
    } else if (!c.strict) {
      await assert.rejects(verifyPaid(requestOf(c), vectors.secret, at(c)));
    }
  });
}

test('under a Router mounted on /payments', async () => {
  const c = vectors.cases.find((x) => x.name === 'valid-complete');
  const router = express.Router();
  router.post('/complete', async (req, res) => {
    try {
      res.json({ sub: (await verifyPaid(req, vectors.secret, at(c))).sub });
    } catch (err) {
      res.status(401).json({ error: 'payment_not_verified', message: err.message });
    }
  });
  const app = express();
  app.use('/payments', express.raw({ type: () => true }), router);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const res = await fetch(`http://127.0.0.1:${server.address().port}${c.path}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'Pi-Payment-Verified': c.header_values[0] }, body: c.body,
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).sub, c.claims.sub);
  } finally {
    server.close();
  }
});
