// The Node/Express baseline of `make bench` (scripts/bench.sh): the payment
// routes of Pi's reference backend (pi-apps/platform-demo, backend
// src/handlers/payments.ts) without its session and database, so that it
// costs the least a Node backend can for the same Pi calls:
//
//   POST /payments/approve  {paymentId}       GET /v2/payments/{id}, then POST /v2/payments/{id}/approve
//   POST /payments/complete {paymentId, txid}  POST /v2/payments/{id}/complete {txid}
//
// Pi is called through axios with a keep-alive agent, as the reference does
// (axios.create with the "Authorization: Key" header). Nothing is written
// anywhere: a crash loses what the process knew.
//
// Environment: PI_API_URL (such as http://127.0.0.1:18405/v2), PI_API_KEY,
// ADDR (host:port to listen on, default 127.0.0.1:18407).
import http from 'node:http';
import axios from 'axios';
import express from 'express';

const apiURL = process.env.PI_API_URL;
const apiKey = process.env.PI_API_KEY;
if (!apiURL || !apiKey) {
  console.error('node-baseline: set PI_API_URL and PI_API_KEY');
  process.exit(1);
}
const [host, port] = (process.env.ADDR || '127.0.0.1:18407').split(':');

const pi = axios.create({
  baseURL: apiURL,
  timeout: 20000,
  headers: { Authorization: `Key ${apiKey}` },
  httpAgent: new http.Agent({ keepAlive: true, maxSockets: 256 }),
});

const app = express();
app.use(express.json());

app.post('/payments/approve', async (req, res) => {
  const paymentId = String(req.body?.paymentId ?? '');
  try {
    const payment = await pi.get(`/payments/${encodeURIComponent(paymentId)}`);
    // The reference inserts the order here ({pi_payment_id, product_id, ...}).
    void payment.data;
    await pi.post(`/payments/${encodeURIComponent(paymentId)}/approve`);
    res.status(200).json({ message: `Approved the payment ${paymentId}` });
  } catch (err) {
    res.status(500).json({ error: 'pi_error', message: String(err?.message ?? err) });
  }
});

app.post('/payments/complete', async (req, res) => {
  const paymentId = String(req.body?.paymentId ?? '');
  const txid = String(req.body?.txid ?? '');
  try {
    // The reference updates the order here ({txid, paid: true}).
    await pi.post(`/payments/${encodeURIComponent(paymentId)}/complete`, { txid });
    res.status(200).json({ message: `Completed the payment ${paymentId}` });
  } catch (err) {
    res.status(500).json({ error: 'pi_error', message: String(err?.message ?? err) });
  }
});

app.get('/hello', (req, res) => res.type('text/plain').send('hello from the node baseline\n'));

app.listen(Number(port), host, () => {
  console.error(`node-baseline: listening on http://${host}:${port}`);
});
