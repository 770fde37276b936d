// EdDSA (Ed25519) keys: the vectors' alg-eddsa token, signed by the Go signer
// with the seed of verify/helpers_test.go (32 bytes of 0x42), verifies with
// that key's public half given as a JWK, a JWK Set or PEM, and nowhere else.
const assert = require('node:assert/strict');
const { createPrivateKey, createPublicKey } = require('node:crypto');
const { test } = require('node:test');
const { createVerifier } = require('caddy-pi-guard-verify');
const { vectors, vec } = require('../testsupport/vectors');

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, Buffer.alloc(32, 0x42)]), format: 'der', type: 'pkcs8' });
const publicKey = createPublicKey(privateKey);
const jwk = publicKey.export({ format: 'jwk' }); // { kty, crv, x }
const edToken = vec('alg-eddsa').header_values[0];
const at = { now: () => vectors.now };

test('a Go-signed EdDSA token verifies with the public key as JWK, JWK Set and PEM', () => {
  const ways = {
    jwk: { keys: [{ kid: vectors.kid, jwk }] },
    jwks: { jwks: { keys: [{ ...jwk, kid: vectors.kid, use: 'sig', alg: 'EdDSA' }, { kty: 'RSA', kid: 'other', n: 'x', e: 'AQAB' }] } },
    pem: { keys: [{ publicKey: publicKey.export({ format: 'pem', type: 'spki' }) }] },
    keyObject: { keys: [{ publicKey }] },
  };
  for (const [name, options] of Object.entries(ways)) {
    const claims = createVerifier({ ...options, ...at }).verifyToken(edToken, 'verified');
    assert.equal(claims.sub, 'pay_TEST_0123456789abcdefABCD', name);
  }
});

test('the algorithm is pinned to the keys', () => {
  // HS256 secret only: the EdDSA token is refused (the vectors' alg-eddsa case).
  const hs = createVerifier({ keys: [{ kid: vectors.kid, secret: vectors.secret }], ...at });
  assert.throws(() => hs.verifyToken(edToken, 'verified'), { code: 'signature', message: /algorithm "EdDSA" is not accepted/ });
  // Ed25519 key only: an HS256 token is refused before any key is used.
  const ed = createVerifier({ keys: [{ jwk }], ...at });
  assert.throws(() => ed.verifyToken(vec('valid-complete').header_values[0], 'verified'), { code: 'signature', message: /"HS256" is not accepted/ });
  // Both, and the token's kid names the HS256 key: its EdDSA signature is not tried with the Ed25519 key.
  const both = createVerifier({ keys: [{ kid: vectors.kid, secret: vectors.secret }, { kid: 'ed-1', jwk }], ...at });
  assert.throws(() => both.verifyToken(edToken, 'verified'), { code: 'signature', message: /is HS256/ });
  assert.equal(both.verifyToken(vec('valid-complete').header_values[0], 'verified').kind, 'verified');
});

test('a changed signature or payload is refused', () => {
  const v = createVerifier({ keys: [{ jwk }], ...at });
  const [h, p, s] = edToken.split('.');
  const flipped = Buffer.from(s, 'base64url');
  flipped[0] ^= 1;
  assert.throws(() => v.verifyToken(`${h}.${p}.${flipped.toString('base64url')}`, 'verified'), { code: 'signature' });
  const claims = JSON.parse(Buffer.from(p, 'base64url'));
  claims.payment.amount = 1000;
  assert.throws(() => v.verifyToken(`${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`, 'verified'), { code: 'signature' });
});

test('private keys are refused: the app needs the public key only', () => {
  assert.throws(() => createVerifier({ keys: [{ jwk: privateKey.export({ format: 'jwk' }) }] }), /private key/);
  assert.throws(() => createVerifier({ keys: [{ publicKey: privateKey.export({ format: 'pem', type: 'pkcs8' }) }] }), /private key/);
  assert.throws(() => createVerifier({ keys: [{ publicKey: privateKey }] }), /public key/);
  assert.throws(() => createVerifier({ jwks: { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] } }), /no Ed25519 signing key/);
  assert.throws(() => createVerifier({ jwks: '{"keys":[]}' }), /JSON\.parse/);
});
