'use strict';
// JWS Compact Serialization (RFC 7515): strict parsing and the HS256 / EdDSA
// signature check, with Node's own crypto (no JOSE library).
const { createHmac, timingSafeEqual, verify: cryptoVerify } = require('node:crypto');
const { MAX_TOKEN_BYTES } = require('./constants');
const { fail } = require('./errors');

const B64URL = /^[A-Za-z0-9_-]*$/;
// Header parameters that would let a token choose its own key: never honoured.
const FORBIDDEN_HEADERS = ['jwk', 'jku', 'x5u', 'x5c', 'crit'];

/**
 * Strict base64url: no padding, and canonical (unused bits zero), so two
 * different strings never decode to the same token. null when it is not.
 */
function b64decode(seg) {
  if (!B64URL.test(seg) || seg.length % 4 === 1) return null;
  const raw = Buffer.from(seg, 'base64url');
  return raw.toString('base64url') === seg ? raw : null;
}

function jsonObject(bytes, what) {
  let v;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    fail('malformed', `${what} is not JSON: ${err.message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('malformed', `${what} is not a JSON object`);
  return v;
}

/** parseCompact(token): { header, payload (Buffer), signature (Buffer), signingInput (Buffer) }. */
function parseCompact(token) {
  if (typeof token !== 'string' || token === '') fail('malformed', 'empty token');
  if (token.length > MAX_TOKEN_BYTES) fail('malformed', `token is ${token.length} bytes, more than ${MAX_TOKEN_BYTES}`);
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] === '' || parts[1] === '') {
    fail('malformed', 'not a compact JWS (three base64url parts separated by dots)');
  }
  const [h, p, s] = parts.map(b64decode);
  if (!h || !p || !s) fail('malformed', 'not canonical base64url');
  const header = jsonObject(h, 'JWT header');
  return { header, payload: p, signature: s, signingInput: Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii') };
}

/**
 * The keys a token may be checked with: the algorithm is pinned to the
 * configured keys, never taken from the token alone (docs/header.md, rule 2).
 * A kid naming a configured key selects that key only; otherwise the keys of
 * the token's algorithm configured without a kid are tried.
 */
function candidates(keys, header) {
  const { alg } = header;
  const kid = header.kid ?? '';
  if (typeof kid !== 'string') fail('malformed', 'kid is not a string');
  for (const name of FORBIDDEN_HEADERS) {
    if (header[name] !== undefined) fail('signature', `the ${name} header parameter is not accepted`);
  }
  const algs = [...new Set(keys.map((k) => k.alg))];
  if (!algs.includes(alg)) fail('signature', `algorithm ${JSON.stringify(alg)} is not accepted, keys are ${algs.join(', ')}`);
  const named = kid === '' ? undefined : keys.find((k) => k.kid === kid);
  if (named) {
    if (named.alg !== alg) fail('signature', `token algorithm ${alg}, but key ${JSON.stringify(kid)} is ${named.alg}`);
    return [named];
  }
  const list = keys.filter((k) => k.alg === alg && (kid === '' || k.kid === ''));
  if (list.length === 0) fail('signature', `unknown key id ${JSON.stringify(kid)}`);
  return list;
}

function signatureHolds(key, signingInput, signature) {
  if (key.alg === 'HS256') {
    const mac = createHmac('sha256', key.secret).update(signingInput).digest();
    return mac.length === signature.length && timingSafeEqual(mac, signature);
  }
  return signature.length === 64 && cryptoVerify(null, signingInput, key.publicKey, signature);
}

/**
 * verifyCompact(token, keys): parses the token, checks its signature with the
 * configured keys and returns { header, claims }. Only the signature is
 * checked here; the claims are checked by claims.js.
 */
function verifyCompact(token, keys) {
  const { header, payload, signature, signingInput } = parseCompact(token);
  const list = candidates(keys, header);
  if (!list.some((k) => signatureHolds(k, signingInput, signature))) {
    fail('signature', list.length === 1 && list[0].kid ? `signature does not verify with key ${JSON.stringify(list[0].kid)}` : `signature does not verify with any ${header.alg} key (${list.length} tried)`);
  }
  return { header, claims: jsonObject(payload, 'claims') };
}

module.exports = { verifyCompact };
