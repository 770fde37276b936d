'use strict';
// The refusal every check throws, and the codes it carries.

/**
 * A refusal. `code` is one of: missing, malformed, signature, expired,
 * not_yet_valid, issuer, audience, kind, binding, not_completed, payment_id
 * (the error codes of examples/testdata/vectors.json and docs/header.md).
 * Any other exception a verifier throws is a programming or configuration
 * error, never "not paid".
 */
class VerificationError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = 'VerificationError';
    this.code = code;
  }
}

/** Throws a VerificationError. */
function fail(code, message) {
  throw new VerificationError(code, message);
}

module.exports = { VerificationError, fail };
