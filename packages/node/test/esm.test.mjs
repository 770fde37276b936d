// The package imported as an ES module by its own name (the "import"
// condition of its exports): same objects as require() gives.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { createVerifier, VerificationError, HEADER_VERIFIED, bodyDigest } from 'caddy-pi-guard-verify';

const require = createRequire(import.meta.url);
const { vectors, vec, optionsAt } = require('../testsupport/vectors.js');

test('import and require give the same objects', () => {
  const cjs = require('caddy-pi-guard-verify');
  assert.equal(createVerifier, cjs.createVerifier);
  assert.equal(VerificationError, cjs.VerificationError, 'instanceof works across both');
  assert.equal(HEADER_VERIFIED, 'Pi-Payment-Verified');
});

test('verifies a vector from ESM', () => {
  const c = vec('valid-complete');
  const v = createVerifier(optionsAt(vectors.now));
  const claims = v.verifyRequest({ method: c.method, path: c.path, headerValues: c.header_values, body: c.body }, 'verified');
  assert.equal(claims.sub, c.claims.sub);
  assert.throws(() => v.verifyRequest({ method: c.method, path: c.path, headerValues: [], body: c.body }, 'verified'), VerificationError);
});

test('bodyDigest of the empty body is the one docs/header.md gives', () => {
  assert.equal(bodyDigest(Buffer.alloc(0)), '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU');
});
