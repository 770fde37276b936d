'use strict';
// The shared test vectors (tokens made by the Go signer) and helpers to use
// them. Not part of the package; used by test/*.
const { readFileSync } = require('node:fs');
const path = require('node:path');

const vectors = JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'examples', 'testdata', 'vectors.json'), 'utf8'));

/** The case named name; throws when the vectors no longer have it. */
function vec(name) {
  const c = vectors.cases.find((x) => x.name === name);
  if (!c) throw new Error(`examples/testdata/vectors.json has no case ${name}`);
  return c;
}

/** 'verified' or 'notice', from the case's header. */
const kindOf = (c) => (c.header === 'Pi-Payment-Notice' ? 'notice' : 'verified');

/** Verifier options of the vectors, at the case's clock. */
const optionsAt = (now) => ({
  keys: [{ kid: vectors.kid, secret: vectors.secret }],
  issuer: vectors.issuer,
  audience: vectors.audience,
  leewaySeconds: vectors.leeway_seconds,
  now: () => now,
});

module.exports = { vectors, vec, kindOf, optionsAt };
