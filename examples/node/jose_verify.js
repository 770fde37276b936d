// The Pi-Payment-Verified check with jose, as docs/header.md ("Verifying with
// jose") shows it, for apps that use jose directly instead of the
// caddy-pi-guard-verify package. test/jose_verify.test.js runs it over the
// shared vectors and under a Router mounted on /payments.
import { createHash } from 'node:crypto';
import { jwtVerify } from 'jose';

/**
 * verifyPaid(req, secretString, { currentDate }): the claims of a valid
 * Pi-Payment-Verified header on an Express request whose raw body
 * express.raw() read; throws otherwise. currentDate is for tests.
 */
export async function verifyPaid(req, secretString, { currentDate } = {}) {
  const secret = new TextEncoder().encode(secretString.trim());
  // req.body: the raw Buffer (mount express.raw() on the payment routes)
  const values = req.headersDistinct['pi-payment-verified'] ?? [];
  if (values.length !== 1) throw new Error('not paid'); // rule 1
  const { payload: c } = await jwtVerify(values[0], secret, {
    algorithms: ['HS256'], // rule 2
    issuer: 'caddy-pi-guard', audience: 'pi-app', // rule 4
    clockTolerance: 30, maxTokenAge: 3600, // rule 6
    requiredClaims: ['iat', 'exp', 'sub'],
    currentDate,
  });
  if (c.kind !== 'verified' || c.sub !== c.payment.identifier // rules 5, 7
      || c.payment.status.developer_completed !== true || !c.payment.transaction?.txid // rule 8
      || c.htm !== req.method || c.htu !== decodeURIComponent(req.originalUrl.split('?')[0]) // rule 9: the full path, also under a mounted Router
      || c.bsh !== createHash('sha256').update(req.body).digest('base64url')) throw new Error('not paid');
  return c;
}
