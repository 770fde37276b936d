'use strict';
// The checks on a token whose signature holds: docs/header.md rules 4 to 8.
const { TYPES } = require('./constants');
const { fail } = require('./errors');

const PAYMENT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const MAX_UNIX_TIME = 253402300799; // 9999-12-31T23:59:59Z
const REQUIRED_STRINGS = ['jti', 'phase', 'htm', 'htu', 'bsh'];

const isUnixTime = (v) => Number.isSafeInteger(v) && v > 0 && v <= MAX_UNIX_TIME;
const nonEmptyString = (v) => typeof v === 'string' && v !== '';
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * checkClaims(header, c, kind, { issuer, audience, leewaySeconds, nowSeconds })
 * throws a VerificationError for the first check that fails.
 */
function checkClaims(header, c, kind, { issuer, audience, leewaySeconds, nowSeconds }) {
  // typ and kind both under the signature: a notice never passes as verified.
  if (header.typ !== TYPES[kind]) fail('kind', `typ is ${JSON.stringify(header.typ)}, want ${TYPES[kind]}`);
  if (c.kind !== kind) fail('kind', `kind is ${JSON.stringify(c.kind)}, want ${kind}`);
  if (typeof c.iss !== 'string' || typeof c.aud !== 'string') fail('malformed', 'iss and aud must be strings');
  if (c.iss !== issuer) fail('issuer', `iss is ${JSON.stringify(c.iss)}, want ${JSON.stringify(issuer)} (the guard's issuer setting)`);
  if (c.aud !== audience) fail('audience', `aud is ${JSON.stringify(c.aud)}, want ${JSON.stringify(audience)} (the guard's audience setting)`);
  checkTimes(c, leewaySeconds, nowSeconds);
  for (const name of REQUIRED_STRINGS) {
    if (!nonEmptyString(c[name])) fail('malformed', `${name} is required`);
  }
  if (typeof c.sub !== 'string' || !PAYMENT_ID.test(c.sub)) fail('malformed', 'sub is not a payment id');
  const p = c.payment;
  if (!isObject(p)) fail('malformed', 'payment is required');
  if (p.identifier !== c.sub) fail('payment_id', `sub ${c.sub} differs from payment.identifier`);
  if (kind === 'verified') {
    const completed = isObject(p.status) && p.status.developer_completed === true;
    const txid = isObject(p.transaction) ? p.transaction.txid : undefined;
    if (!completed || !nonEmptyString(txid)) fail('not_completed', `payment ${c.sub} is not completed with a transaction`);
  }
}

// Rule 6: refuse when now >= exp + leeway, and when iat > now + leeway.
function checkTimes(c, leewaySeconds, nowSeconds) {
  if (!isUnixTime(c.iat) || !isUnixTime(c.exp)) fail('malformed', 'iat and exp must be Unix times in seconds');
  if (c.exp <= c.iat) fail('malformed', `exp ${c.exp} is not after iat ${c.iat}`);
  if (nowSeconds >= c.exp + leewaySeconds) fail('expired', `exp ${c.exp}, now ${nowSeconds} (leeway ${leewaySeconds} s)`);
  if (c.iat > nowSeconds + leewaySeconds) fail('not_yet_valid', `iat ${c.iat}, now ${nowSeconds} (leeway ${leewaySeconds} s): is this clock behind?`);
}

module.exports = { checkClaims };
