// Every case of examples/testdata/vectors.json through the package, loaded
// with require() by its own name (the "require" condition of its exports).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { createVerifier, VerificationError } = require('caddy-pi-guard-verify');
const { vectors, kindOf, optionsAt } = require('../testsupport/vectors');

for (const c of vectors.cases) {
  test(c.name, () => {
    const v = createVerifier(optionsAt(c.now || vectors.now));
    const req = { method: c.method, path: c.path, headerValues: c.header_values, body: Buffer.from(c.body, 'utf8') };
    const opts = c.payment_id ? { paymentId: c.payment_id } : {};
    if (c.expect === 'valid') {
      const claims = v.verifyRequest(req, kindOf(c), opts);
      assert.equal(claims.sub, c.claims.sub);
      assert.equal(claims.kind, c.claims.kind);
      assert.equal(claims.phase, c.claims.phase);
      assert.equal(claims.payment.transaction?.txid ?? '', c.claims.txid);
      assert.equal(String(claims.payment.amount), c.claims.amount);
      assert.equal(claims.amount_text, c.claims.amount_text, 'the exact decimal amount, as a string');
      assert.equal(claims.uid ?? '', c.claims.uid);
    } else {
      // Strict cases too: this verifier refuses them, like the Go one.
      assert.throws(() => v.verifyRequest(req, kindOf(c), opts), (err) => {
        assert.ok(err instanceof VerificationError, err);
        assert.equal(err.code, c.error, err.message);
        return true;
      });
    }
  });
}

test('every error code of the vectors is covered', () => {
  const seen = new Set(vectors.cases.filter((c) => c.expect === 'invalid').map((c) => c.error));
  assert.deepEqual([...seen].sort(), [...vectors.error_codes].sort());
});

test('a key without kid accepts any kid, still pinned to the secret', () => {
  const v = createVerifier({ keys: [{ secret: `  ${vectors.secret}\n` }], now: () => vectors.now });
  const unknownKid = vectors.cases.find((c) => c.name === 'unknown-kid');
  assert.equal(v.verifyToken(unknownKid.header_values[0], 'verified').kind, 'verified');
  const wrong = vectors.cases.find((c) => c.name === 'wrong-secret');
  assert.throws(() => v.verifyToken(wrong.header_values[0], 'verified'), { code: 'signature' });
});

test('a path with a query string or percent-encoding is the same path', () => {
  const c = vectors.cases.find((x) => x.name === 'valid-complete');
  const v = createVerifier(optionsAt(vectors.now));
  const req = { method: c.method, headerValues: c.header_values, body: c.body };
  assert.equal(v.verifyRequest({ ...req, path: '/payments/complete?x=1' }, 'verified').sub, c.claims.sub);
  assert.equal(v.verifyRequest({ ...req, path: '/payments/%63omplete' }, 'verified').sub, c.claims.sub);
  assert.throws(() => v.verifyRequest({ ...req, path: '/complete' }, 'verified'), /request path is \/complete.*req\.originalUrl/);
});

test('configuration mistakes say what to do', () => {
  assert.throws(() => createVerifier({ keys: [{ secret: 'short' }] }), /at least 32.*PI_GUARD_SIGNING_KEY/);
  assert.throws(() => createVerifier({ keys: [{ secret: '   ' }] }), /0 bytes/);
  assert.throws(() => createVerifier({ keys: [] }), /no keys/);
  assert.throws(() => createVerifier({}), /no keys/);
  assert.throws(() => createVerifier({ keys: [{ kid: 'a', secret: vectors.secret }, { kid: 'a', secret: vectors.secret }] }), /two keys have the kid "a"/);
  const v = createVerifier(optionsAt(vectors.now));
  assert.throws(() => v.verifyToken('x', 'paid'), TypeError);
  assert.throws(() => v.middleware('paid'), /kind must be one of/);
});

test('the error message never holds the secret', () => {
  const v = createVerifier(optionsAt(vectors.now));
  for (const c of vectors.cases.filter((x) => x.expect === 'invalid')) {
    try {
      v.verifyRequest({ method: c.method, path: c.path, headerValues: c.header_values, body: c.body }, kindOf(c));
    } catch (err) {
      assert.ok(!err.message.includes(vectors.secret), c.name);
    }
  }
});
