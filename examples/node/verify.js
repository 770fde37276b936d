// Verifier for the headers caddy-pi-guard adds to payment callbacks
// (specification: docs/header.md). HS256 only, with the `jose` package.
//
//   a valid Pi-Payment-Verified header => paid
//   anything else (notice, missing, invalid) => not paid
import { createHash, timingSafeEqual } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';

export const HEADER_VERIFIED = 'Pi-Payment-Verified';
export const HEADER_NOTICE = 'Pi-Payment-Notice';
export const TYPES = { verified: 'pi-payment-verified+jwt', notice: 'pi-payment-notice+jwt' };
export const DEFAULT_ISSUER = 'caddy-pi-guard';
export const DEFAULT_AUDIENCE = 'pi-app';
export const DEFAULT_LEEWAY_SECONDS = 30;
export const MAX_TOKEN_BYTES = 32 * 1024;
const MIN_SECRET_BYTES = 32;
const PAYMENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * A refusal. `code` is one of: missing, malformed, signature, expired,
 * not_yet_valid, issuer, audience, kind, binding, not_completed, payment_id
 * (the codes of examples/testdata/vectors.json).
 */
export class VerificationError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'VerificationError';
    this.code = code;
  }
}

const fail = (code, message) => {
  throw new VerificationError(code, message);
};

/** base64url (no padding) SHA-256 of the body bytes: the "bsh" claim. */
export function bodyDigest(body) {
  return createHash('sha256').update(body).digest('base64url');
}

/**
 * createVerifier({ keys, issuer, audience, leewaySeconds, now })
 *
 * keys: [{ secret, kid }] - secret is the guard's signing_key (string, its
 *   UTF-8 bytes after trimming surrounding whitespace, or bytes), at least 32
 *   bytes; kid is optional: a key without kid is tried for any token whose kid
 *   names no other key (list two keys while rotating).
 * now: () => current Unix time in seconds (injectable for tests).
 */
export function createVerifier({
  keys,
  issuer = DEFAULT_ISSUER,
  audience = DEFAULT_AUDIENCE,
  leewaySeconds = DEFAULT_LEEWAY_SECONDS,
  maxTokenAgeSeconds = 3600,
  now = () => Date.now() / 1000,
} = {}) {
  if (!Array.isArray(keys) || keys.length === 0) throw new TypeError('verify: no keys');
  const prepared = keys.map(({ secret, kid }) => {
    const bytes = typeof secret === 'string' ? new TextEncoder().encode(secret.trim()) : new Uint8Array(secret);
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new TypeError(`verify: HS256 secret is ${bytes.length} bytes, must be at least ${MIN_SECRET_BYTES}`);
    }
    return { kid: kid || '', secret: bytes };
  });

  function candidates(header) {
    if (header.kid) {
      const named = prepared.filter((k) => k.kid === header.kid);
      if (named.length > 0) return named;
      const anonymous = prepared.filter((k) => k.kid === '');
      if (anonymous.length === 0) fail('signature', `unknown key id ${JSON.stringify(header.kid)}`);
      return anonymous;
    }
    return prepared;
  }

  /** Checks a token of kind 'verified' or 'notice' without a request; returns its claims. */
  async function verifyToken(token, kind) {
    if (!(kind in TYPES)) fail('kind', `unknown kind ${kind}`);
    if (typeof token !== 'string' || token === '') fail('malformed', 'empty token');
    if (token.length > MAX_TOKEN_BYTES) fail('malformed', 'token too long');
    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      fail('malformed', 'unreadable JWT header');
    }
    // Pin the algorithm: only HS256 is configured, so "none", EdDSA, RS256...
    // are refused before any key is used.
    if (header.alg !== 'HS256') fail('signature', `algorithm ${JSON.stringify(header.alg)} is not accepted`);
    if (header.jwk !== undefined || header.crit !== undefined) fail('signature', 'jwk/crit headers are not accepted');

    const nowSeconds = Math.floor(now());
    let result;
    for (const key of candidates(header)) {
      try {
        result = await jwtVerify(token, key.secret, {
          algorithms: ['HS256'],
          issuer,
          audience,
          typ: TYPES[kind],
          requiredClaims: ['iat', 'exp', 'sub', 'jti'],
          currentDate: new Date(nowSeconds * 1000),
          clockTolerance: leewaySeconds,
          // Turns on jose's iat check: an iat more than clockTolerance in
          // the future is refused. Must be at least token_ttl + leeway.
          maxTokenAge: maxTokenAgeSeconds,
        });
        break;
      } catch (err) {
        if (err instanceof joseErrors.JWSSignatureVerificationFailed) continue; // try the next key
        throw mapJoseError(err);
      }
    }
    if (!result) fail('signature', 'signature does not verify');
    const { payload: c, protectedHeader } = result;
    checkClaims(c, protectedHeader, kind);
    return c;
  }

  // What jwtVerify does not check. The signature holds, so only the guard
  // can have written these claims: typ in another letter case (jose compares
  // it case-insensitively), aud as an array, non-canonical base64url would
  // all have to come from the guard itself, which never writes them
  // (docs/header.md, "Checks a library may skip").
  function checkClaims(c, protectedHeader, kind) {
    if (c.kind !== kind) fail('kind', `kind is ${c.kind}, want ${kind}`);
    for (const name of ['htm', 'htu', 'bsh']) {
      if (typeof c[name] !== 'string' || c[name] === '') fail('malformed', `${name} is required`);
    }
    if (typeof c.sub !== 'string' || !PAYMENT_ID.test(c.sub)) fail('malformed', 'sub is not a payment id');
    const p = c.payment;
    if (p === null || typeof p !== 'object') fail('malformed', 'payment is required');
    if (p.identifier !== c.sub) fail('payment_id', 'sub differs from payment.identifier');
    if (kind === 'verified') {
      const completed = p.status?.developer_completed === true;
      const txid = p.transaction?.txid;
      if (!completed || typeof txid !== 'string' || txid === '') fail('not_completed', `payment ${c.sub} is not completed`);
    }
  }

  /**
   * Checks a request: { method, path, headerValues, body } where path is the
   * URL path without query string, headerValues the values of the header
   * (array), body the raw body bytes (Buffer). Options: { paymentId } to
   * require a given payment id.
   */
  async function verifyRequest({ method, path, headerValues, body }, kind, { paymentId } = {}) {
    const name = kind === 'notice' ? HEADER_NOTICE : HEADER_VERIFIED;
    const values = headerValues ?? [];
    if (values.length === 0) fail('missing', `no ${name} header`);
    if (values.length > 1) fail('malformed', `${name} header appears ${values.length} times`);
    const c = await verifyToken(values[0], kind);
    if (paymentId !== undefined && c.sub !== paymentId) fail('payment_id', `token is for payment ${c.sub}`);
    if (c.htm !== method) fail('binding', `token is for method ${c.htm}`);
    let decodedPath;
    try {
      decodedPath = decodeURIComponent(path);
    } catch {
      fail('binding', 'request path is not valid percent-encoding');
    }
    if (c.htu !== decodedPath) fail('binding', `token is for path ${c.htu}`);
    const got = Buffer.from(bodyDigest(body ?? Buffer.alloc(0)));
    const want = Buffer.from(c.bsh);
    if (got.length !== want.length || !timingSafeEqual(got, want)) fail('binding', 'body digest differs');
    return c;
  }

  /**
   * Express middleware: next() only with a valid header of the kind, claims in
   * req.piPayment; otherwise 401 {"error":"payment_not_verified",...}.
   * Needs the raw body: mount express.raw() before it.
   */
  function middleware(kind = 'verified') {
    return async (req, res, next) => {
      try {
        req.piPayment = await verifyRequest(fromExpress(req, kind), kind);
        next();
      } catch (err) {
        if (!(err instanceof VerificationError)) return next(err);
        res.status(401).set('Cache-Control', 'no-store').json({
          error: kind === 'notice' ? 'notice_not_verified' : 'payment_not_verified',
          message: err.message,
        });
      }
    };
  }

  return { verifyToken, verifyRequest, middleware };
}

/** The request fields verifyRequest needs, from an Express request whose body express.raw() read. */
export function fromExpress(req, kind) {
  const name = (kind === 'notice' ? HEADER_NOTICE : HEADER_VERIFIED).toLowerCase();
  return {
    method: req.method,
    path: req.path, // without the query string, not percent-decoded
    // headersDistinct keeps duplicates apart (req.headers would join them).
    headerValues: req.headersDistinct[name] ?? [],
    body: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
  };
}

function mapJoseError(err) {
  if (err instanceof VerificationError) return err;
  if (err instanceof joseErrors.JWTExpired) return new VerificationError('expired', err.message);
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    if (err.reason === 'missing' || err.reason === 'invalid') return new VerificationError('malformed', err.message);
    const code = { iss: 'issuer', aud: 'audience', typ: 'kind', iat: 'not_yet_valid' }[err.claim] ?? 'malformed';
    return new VerificationError(code, err.message);
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return new VerificationError('signature', err.message);
  return new VerificationError('malformed', err.message);
}
