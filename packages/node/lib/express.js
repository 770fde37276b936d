'use strict';
// Express (and plain node:http) glue: the request fields a check needs, and
// the middleware that leaves the claims on req.piPayment.
const C = require('./constants');
const { VerificationError } = require('./errors');

const KINDS = ['verified', 'notice', 'verified-or-notice'];

/**
 * The URL path the guard forwarded, without the query string. Under an
 * Express Router mounted on /payments, req.path is "/approve" but the token
 * is for "/payments/approve": req.originalUrl keeps the full path.
 */
function requestPath(req) {
  const url = req.originalUrl ?? req.url ?? '';
  const end = url.search(/[?#]/);
  return end === -1 ? url : url.slice(0, end);
}

/** Every value of the header, duplicates kept apart (req.headers would join them). */
function headerValues(req, name) {
  const lower = name.toLowerCase();
  if (req.headersDistinct) return req.headersDistinct[lower] ?? [];
  const v = req.headers?.[lower];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(',')).map((s) => s.trim());
}

function announcesBody(req) {
  const h = req.headers ?? {};
  return h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0');
}

/**
 * The raw body bytes, as express.raw() leaves them in req.body (a Buffer).
 * Throws a TypeError (a configuration error, not a refusal) when the body was
 * parsed into something else or not read at all.
 */
function rawBody(req) {
  const b = req.body;
  if (b instanceof Uint8Array) return b;
  // Nothing read: body-parser 1.x leaves {} and 2.x undefined on a request
  // without a body, which is the empty body.
  const untouched = b === undefined || (b !== null && typeof b === 'object' && Object.getPrototypeOf(b) === Object.prototype && Object.keys(b).length === 0);
  if (untouched && !announcesBody(req)) return Buffer.alloc(0);
  throw new TypeError(
    `caddy-pi-guard-verify: req.body is ${b === undefined ? 'undefined' : `a ${typeof b}`}, not the raw body bytes. ` +
      'Mount express.raw({ type: () => true }) on the payment routes, before any JSON parser, and JSON.parse(req.body) yourself.',
  );
}

/** The fields verifier.verifyRequest needs, from an Express (or node:http) request whose body express.raw() read. */
function fromExpress(req, kind = 'verified') {
  return {
    method: req.method,
    path: requestPath(req),
    headerValues: headerValues(req, kind === 'notice' ? C.HEADER_NOTICE : C.HEADER_VERIFIED),
    body: rawBody(req),
  };
}

function refuse(res, kind, err) {
  const body = JSON.stringify({ error: kind === 'notice' ? 'notice_not_verified' : 'payment_not_verified', message: err.message });
  res.statusCode = 401;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

/**
 * middleware(verifier, kind): next() only for a request whose header of the
 * kind verifies, with the claims in req.piPayment; otherwise 401
 * {"error":"payment_not_verified"|"notice_not_verified","message":...}.
 *
 * kind 'verified-or-notice' is for the incomplete route: a Pi-Payment-Verified
 * header is checked as verified (and never falls back to the notice when it
 * fails), otherwise Pi-Payment-Notice as a notice. Read req.piPayment.kind:
 * only 'verified' means paid.
 *
 * options.paymentId: (req) => the payment id the app expects, or undefined.
 */
function middleware(verifier, kind, { paymentId } = {}) {
  if (!KINDS.includes(kind)) throw new TypeError(`caddy-pi-guard-verify: kind must be one of ${KINDS.join(', ')}, not ${JSON.stringify(kind)}`);
  return function piGuardVerify(req, res, next) {
    let effective = kind;
    if (kind === 'verified-or-notice') effective = headerValues(req, C.HEADER_VERIFIED).length > 0 ? 'verified' : 'notice';
    try {
      const expected = paymentId ? paymentId(req) : undefined;
      req.piPayment = verifier.verifyRequest(fromExpress(req, effective), effective, { paymentId: expected });
    } catch (err) {
      if (err instanceof VerificationError) return refuse(res, effective, err);
      return next(err);
    }
    return next();
  };
}

module.exports = { middleware, fromExpress, requestPath };
