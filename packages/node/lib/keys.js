'use strict';
// Turns the keys an app configures into the form the signature check uses:
// { kid, alg: 'HS256', secret: Buffer } or { kid, alg: 'EdDSA', publicKey: KeyObject }.
const { KeyObject, createPublicKey } = require('node:crypto');
const { MIN_SECRET_BYTES } = require('./constants');

/**
 * prepareKeys(keys, jwks): the configured keys, checked.
 *
 * keys: [{ secret, kid }] for HS256 (secret: the guard's signing_key; a string
 *   is used as its UTF-8 bytes with surrounding whitespace removed, as the
 *   guard does), or [{ jwk, kid }] / [{ publicKey, kid }] for EdDSA (an Ed25519
 *   public JWK, or a public key as PEM text or a crypto KeyObject).
 * jwks: a JWK Set object as the guard publishes it ({ keys: [...] }); its
 *   Ed25519 keys are added, other key types are skipped.
 */
function prepareKeys(keys = [], jwks) {
  if (!Array.isArray(keys)) throw new TypeError('verify: keys must be an array of { secret, kid } or { jwk, kid }');
  const prepared = keys.map((k, i) => prepareKey(k, i));
  if (jwks !== undefined) prepared.push(...fromJwks(jwks));
  if (prepared.length === 0) {
    throw new TypeError('verify: no keys: pass keys: [{ secret: process.env.PI_GUARD_SIGNING_KEY }] or the guard\'s JWK Set as jwks');
  }
  const seen = new Set();
  for (const k of prepared) {
    if (k.kid === '') continue;
    if (seen.has(k.kid)) throw new TypeError(`verify: two keys have the kid ${JSON.stringify(k.kid)}; give each its own`);
    seen.add(k.kid);
  }
  return prepared;
}

function prepareKey(k, i) {
  if (k === null || typeof k !== 'object') throw new TypeError(`verify: key ${i} is not an object`);
  const kid = k.kid ?? '';
  if (typeof kid !== 'string') throw new TypeError(`verify: key ${i}: kid must be a string`);
  if (k.secret !== undefined) return { kid, alg: 'HS256', secret: secretBytes(k.secret, i) };
  if (k.jwk !== undefined) return { kid: kid || jwkKid(k.jwk), alg: 'EdDSA', publicKey: ed25519FromJwk(k.jwk, `key ${i}`) };
  if (k.publicKey !== undefined) return { kid, alg: 'EdDSA', publicKey: ed25519FromPublicKey(k.publicKey, i) };
  throw new TypeError(`verify: key ${i} has none of secret (HS256), jwk or publicKey (EdDSA)`);
}

function secretBytes(secret, i) {
  let bytes;
  if (typeof secret === 'string') bytes = Buffer.from(secret.trim(), 'utf8');
  else if (secret instanceof Uint8Array) bytes = Buffer.from(secret);
  else throw new TypeError(`verify: key ${i}: secret must be a string or bytes`);
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new TypeError(
      `verify: key ${i}: HS256 secret is ${bytes.length} bytes, must be at least ${MIN_SECRET_BYTES}: ` +
        'use the guard\'s signing_key (is PI_GUARD_SIGNING_KEY set?)',
    );
  }
  return bytes;
}

function jwkKid(jwk) {
  return jwk && typeof jwk.kid === 'string' ? jwk.kid : '';
}

function ed25519FromJwk(jwk, where) {
  if (jwk === null || typeof jwk !== 'object') throw new TypeError(`verify: ${where}: jwk is not an object`);
  if (jwk.d !== undefined) throw new TypeError(`verify: ${where}: the JWK holds a private key; give the public key only`);
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') throw new TypeError(`verify: ${where}: not an Ed25519 key (kty OKP, crv Ed25519)`);
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA') throw new TypeError(`verify: ${where}: alg is ${JSON.stringify(jwk.alg)}, want EdDSA`);
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  } catch (err) {
    throw new TypeError(`verify: ${where}: unreadable Ed25519 JWK: ${err.message}`);
  }
}

function ed25519FromPublicKey(key, i) {
  let pub;
  if (key instanceof KeyObject) {
    if (key.type !== 'public') throw new TypeError(`verify: key ${i}: give the public key, not a ${key.type} key`);
    pub = key;
  } else if (typeof key === 'string') {
    if (/PRIVATE KEY/.test(key)) throw new TypeError(`verify: key ${i}: this PEM holds a private key; give the public key only`);
    pub = createPublicKey(key);
  } else {
    throw new TypeError(`verify: key ${i}: publicKey must be PEM text or a crypto KeyObject`);
  }
  if (pub.asymmetricKeyType !== 'ed25519') throw new TypeError(`verify: key ${i}: not an Ed25519 key (${pub.asymmetricKeyType})`);
  return pub;
}

// The Ed25519 keys of a JWK Set, as verify.ParseJWKS in Go reads it.
function fromJwks(jwks) {
  if (jwks === null || typeof jwks !== 'object' || !Array.isArray(jwks.keys)) {
    throw new TypeError('verify: jwks must be a JWK Set object: { "keys": [...] } (JSON.parse the guard\'s jwks.json)');
  }
  const out = [];
  jwks.keys.forEach((jwk, i) => {
    if (jwk === null || typeof jwk !== 'object') throw new TypeError(`verify: jwks key ${i} is not an object`);
    if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || (jwk.use !== undefined && jwk.use !== 'sig')) return;
    out.push({ kid: jwkKid(jwk), alg: 'EdDSA', publicKey: ed25519FromJwk(jwk, `jwks key ${i}`) });
  });
  if (out.length === 0) throw new TypeError('verify: the JWK Set has no Ed25519 signing key');
  return out;
}

module.exports = { prepareKeys };
