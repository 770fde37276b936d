// Example Express app behind caddy-pi-guard. An order is marked paid only by
// a valid Pi-Payment-Verified header; notices record other states.
import express from 'express';

/**
 * createApp(verifier): the app's routes; orders are kept in memory. verifier
 * comes from createVerifier of the caddy-pi-guard-verify package (packages/node).
 */
export function createApp(verifier) {
  const orders = new Map(); // payment id -> order; a real app uses its database

  const upsert = (c, change) => {
    const o = orders.get(c.sub) ?? { payment_id: c.sub, status: 'pending', deliveries: 0 };
    o.amount = c.payment.amount;
    o.memo = c.payment.memo;
    change(o);
    o.updated_at = new Date().toISOString();
    orders.set(c.sub, o);
    return { ...o };
  };
  // Idempotent: the guard may deliver the same payment more than once.
  const markPaid = (c) => {
    let first = false;
    const order = upsert(c, (o) => {
      o.deliveries += 1;
      if (o.status !== 'paid') {
        o.status = 'paid';
        o.txid = c.payment.transaction.txid;
        first = true;
      }
    });
    return { order, first };
  };
  // A notice never makes an order paid, and never un-pays one.
  const note = (c, status) =>
    upsert(c, (o) => {
      if (o.status !== 'paid') o.status = status;
    });

  const paid = (req, res) => {
    const { order, first } = markPaid(req.piPayment);
    if (first) console.log(`payment ${order.payment_id} paid: ${order.amount} Pi, tx ${order.txid}`);
    res.json({ ok: true, order, already_recorded: !first });
  };
  const noted = (status) => (req, res) => res.json({ ok: true, order: note(req.piPayment, status) });

  // The payment routes on a Router mounted on /payments, as in Pi's reference
  // app: the tokens are bound to the full path (/payments/approve), which the
  // middleware reads from req.originalUrl.
  const payments = express.Router();
  // The raw body is needed for the bsh digest: parse JSON yourself from it.
  payments.use(express.raw({ type: () => true, limit: '1mb' }));
  payments.post('/approve', verifier.middleware('notice'), noted('pending'));
  payments.post('/complete', verifier.middleware('verified'), paid);
  // Incomplete: verified (the guard completed it) => paid; notice => not paid.
  // A verified header that fails is refused, never read as a notice.
  payments.post('/incomplete', verifier.middleware('verified-or-notice'), (req, res) =>
    req.piPayment.kind === 'verified' ? paid(req, res) : noted('incomplete')(req, res),
  );
  payments.post('/cancelled_payment', verifier.middleware('notice'), noted('cancelled'));

  const app = express();
  app.disable('x-powered-by');
  app.use('/payments', payments);

  app.get('/orders', (req, res) => {
    const list = [...orders.values()].sort((a, b) => a.payment_id.localeCompare(b.payment_id));
    res.set('Cache-Control', 'no-store').json({ orders: list });
  });
  app.get('/', (req, res) => {
    res.type('html').send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>example app behind caddy-pi-guard</title></head>
<body><h1>example app behind caddy-pi-guard</h1>
<p>This placeholder app marks an order paid only when the payment callback carries a valid
<code>Pi-Payment-Verified</code> header. See <a href="/orders">/orders</a>.</p></body></html>
`);
  });
  return app;
}

