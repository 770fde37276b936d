// Runs the example app. Environment:
//   PORT (default 3000), HOST (default 127.0.0.1: reach it through the guard)
//   PI_GUARD_SIGNING_KEY  the guard's signing_key (HS256 secret, >= 32 bytes)
//   PI_GUARD_KEY_ID       optional kid of that secret
//   PI_GUARD_ISSUER, PI_GUARD_AUDIENCE  optional, defaults caddy-pi-guard / pi-app
import { createApp } from './app.js';
import { createVerifier } from 'caddy-pi-guard-verify';

const secret = process.env.PI_GUARD_SIGNING_KEY ?? '';
if (secret.trim() === '') {
  console.error('set PI_GUARD_SIGNING_KEY to the guard\'s signing_key');
  process.exit(1);
}
const verifier = createVerifier({
  keys: [{ secret, kid: process.env.PI_GUARD_KEY_ID || undefined }],
  issuer: process.env.PI_GUARD_ISSUER || undefined,
  audience: process.env.PI_GUARD_AUDIENCE || undefined,
});
const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
createApp(verifier).listen(port, host, () => {
  console.log(`example app behind caddy-pi-guard listening on http://${host}:${port}`);
});
