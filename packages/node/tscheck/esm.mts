// An ES module importing the package: resolves to index.d.mts through the
// "import" condition of the package's exports.
import { createVerifier, VerificationError, type PaymentClaims } from 'caddy-pi-guard-verify';

const verifier = createVerifier({ keys: [{ secret: 'x'.repeat(32) }] });
export function paid(token: string): PaymentClaims | null {
  try {
    return verifier.verifyToken(token, 'verified');
  } catch (err) {
    if (err instanceof VerificationError && err.code === 'signature') return null;
    throw err;
  }
}
