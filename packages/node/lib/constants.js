'use strict';
// Names and defaults of docs/header.md, shared by every file of the package.

module.exports = Object.freeze({
  HEADER_VERIFIED: 'Pi-Payment-Verified',
  HEADER_NOTICE: 'Pi-Payment-Notice',
  TYPES: Object.freeze({ verified: 'pi-payment-verified+jwt', notice: 'pi-payment-notice+jwt' }),
  DEFAULT_ISSUER: 'caddy-pi-guard',
  DEFAULT_AUDIENCE: 'pi-app',
  DEFAULT_LEEWAY_SECONDS: 30,
  MAX_TOKEN_BYTES: 32 * 1024,
  MIN_SECRET_BYTES: 32,
});
