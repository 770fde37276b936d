// A backend shaped like Pi's reference app, in TypeScript: a Router mounted on
// /payments, with the package's middleware on each route. Compiled by
// test/typescript.test.js with the reference app's compiler options.
import express from 'express';
import { createVerifier, PaymentClaims, VerificationError, HEADER_VERIFIED } from 'caddy-pi-guard-verify';

export function createApp(secret: string, now: number): express.Express {
  const verifier = createVerifier({ keys: [{ secret: secret }], now: () => now });
  const payments = express.Router();
  payments.use(express.raw({ type: () => true }));

  const answer = (req: express.Request, res: express.Response) => {
    const c: PaymentClaims | undefined = req.piPayment; // typed by the package
    if (!c) throw new Error('the middleware sets req.piPayment');
    const paid: boolean = c.kind === 'verified';
    res.json({ sub: c.sub, kind: c.kind, phase: c.phase, paid: paid, amount_text: c.amount_text });
  };
  payments.post('/approve', verifier.middleware('notice'), answer);
  payments.post('/complete', verifier.middleware('verified'), answer);
  payments.post('/incomplete', verifier.middleware('verified-or-notice'), answer);
  payments.post('/cancelled_payment', verifier.middleware('notice'), answer);

  // The lower-level calls type-check too.
  payments.post('/manual', (req, res) => {
    try {
      const values: string[] = req.headersDistinct[HEADER_VERIFIED.toLowerCase()] || [];
      const c = verifier.verifyRequest({ method: req.method, path: req.originalUrl, headerValues: values, body: req.body as Buffer }, 'verified');
      res.json({ sub: c.sub });
    } catch (err) {
      if (err instanceof VerificationError) {
        res.status(401).json({ error: 'payment_not_verified', code: err.code });
        return;
      }
      throw err;
    }
  });

  const app = express();
  app.use('/payments', payments);
  return app;
}
