'use strict';
// caddy-pi-guard-verify: checks the Pi-Payment-Verified and Pi-Payment-Notice
// headers that caddy-pi-guard adds to a Pi app's payment callbacks
// (specification: docs/header.md of caddy-pi-guard).
//
//   a valid Pi-Payment-Verified header => paid
//   anything else (a notice, no header, an invalid header) => not paid
//
// CommonJS entry; index.mjs re-exports the same objects for ESM.
const constants = require('./lib/constants');
const { VerificationError } = require('./lib/errors');
const { createVerifier, bodyDigest } = require('./lib/verifier');
const { fromExpress, requestPath } = require('./lib/express');

module.exports = {
  createVerifier,
  VerificationError,
  bodyDigest,
  fromExpress,
  requestPath,
  HEADER_VERIFIED: constants.HEADER_VERIFIED,
  HEADER_NOTICE: constants.HEADER_NOTICE,
  TYPES: constants.TYPES,
  DEFAULT_ISSUER: constants.DEFAULT_ISSUER,
  DEFAULT_AUDIENCE: constants.DEFAULT_AUDIENCE,
  DEFAULT_LEEWAY_SECONDS: constants.DEFAULT_LEEWAY_SECONDS,
  MAX_TOKEN_BYTES: constants.MAX_TOKEN_BYTES,
};
