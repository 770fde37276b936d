// ESM entry of caddy-pi-guard-verify: the very objects of the CommonJS entry,
// so `instanceof VerificationError` holds whichever way a module loaded it.
import cjs from './index.js';

export const {
  createVerifier,
  VerificationError,
  bodyDigest,
  fromExpress,
  requestPath,
  HEADER_VERIFIED,
  HEADER_NOTICE,
  TYPES,
  DEFAULT_ISSUER,
  DEFAULT_AUDIENCE,
  DEFAULT_LEEWAY_SECONDS,
  MAX_TOKEN_BYTES,
} = cjs;
