'use strict';
// createVerifier: checks a token, or a request that carries one.
const { createHash, timingSafeEqual } = require('node:crypto');
const C = require('./constants');
const { checkClaims } = require('./claims');
const { middleware } = require('./express');
const { fail } = require('./errors');
const { verifyCompact } = require('./jws');
const { prepareKeys } = require('./keys');

/** base64url (no padding) SHA-256 of the body bytes: the "bsh" claim. */
function bodyDigest(body) {
  return createHash('sha256').update(body).digest('base64url');
}

const headerFor = (kind) => (kind === 'notice' ? C.HEADER_NOTICE : C.HEADER_VERIFIED);

/**
 * createVerifier({ keys, jwks, issuer, audience, leewaySeconds, now })
 *
 * keys: [{ secret, kid }] (HS256: the guard's signing_key, at least 32 bytes)
 *   and/or [{ jwk, kid }] / [{ publicKey, kid }] (EdDSA); jwks: the guard's
 *   JWK Set object. A key without kid is tried for any token whose kid names
 *   no other key (list two keys while rotating).
 * now: () => current Unix time in seconds (injectable for tests).
 *
 * Every check is synchronous; a refusal throws a VerificationError.
 */
function createVerifier({
  keys,
  jwks,
  issuer = C.DEFAULT_ISSUER,
  audience = C.DEFAULT_AUDIENCE,
  leewaySeconds = C.DEFAULT_LEEWAY_SECONDS,
  now = () => Date.now() / 1000,
} = {}) {
  const prepared = prepareKeys(keys, jwks);
  if (!Number.isInteger(leewaySeconds) || leewaySeconds < 0) throw new TypeError('verify: leewaySeconds must be a whole number of seconds, 0 or more');

  /** Checks a token of kind 'verified' or 'notice' without a request; returns its claims. */
  function verifyToken(token, kind) {
    if (!(kind in C.TYPES)) throw new TypeError(`verify: kind must be 'verified' or 'notice', not ${JSON.stringify(kind)}`);
    const { header, claims } = verifyCompact(token, prepared);
    checkClaims(header, claims, kind, { issuer, audience, leewaySeconds, nowSeconds: Math.floor(now()) });
    return claims;
  }

  /**
   * Checks a request: { method, path, headerValues, body }. path is the full
   * URL path the guard forwarded (a query string is ignored; percent-encoded
   * as received), headerValues every value of the kind's header, body the raw
   * body bytes (Buffer, Uint8Array or string). Options: { paymentId } to
   * require a given payment id. Returns the claims.
   */
  function verifyRequest({ method, path, headerValues, body }, kind, { paymentId } = {}) {
    const values = headerValues ?? [];
    if (values.length === 0) fail('missing', `no ${headerFor(kind)} header`);
    if (values.length > 1) fail('malformed', `${headerFor(kind)} header appears ${values.length} times`);
    const c = verifyToken(values[0], kind);
    if (paymentId !== undefined && c.sub !== paymentId) fail('payment_id', `token is for payment ${c.sub}, expected ${paymentId}`);
    if (c.htm !== method) fail('binding', `token is for method ${c.htm}, request is ${method}`);
    let decodedPath;
    try {
      decodedPath = decodeURIComponent(String(path).split('?', 1)[0]);
    } catch {
      fail('binding', 'request path is not valid percent-encoding');
    }
    if (c.htu !== decodedPath) {
      fail('binding', `token is for path ${c.htu}, request path is ${decodedPath} (behind a mount point, pass the full path: req.originalUrl)`);
    }
    const got = Buffer.from(bodyDigest(body ?? Buffer.alloc(0)));
    const want = Buffer.from(c.bsh);
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      fail('binding', 'body digest differs: verify the raw body bytes as received (express.raw), before any parsing');
    }
    return c;
  }

  const verifier = { verifyToken, verifyRequest };
  verifier.middleware = (kind = 'verified', options) => middleware(verifier, kind, options);
  return Object.freeze(verifier);
}

module.exports = { createVerifier, bodyDigest };
