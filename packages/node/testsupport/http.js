'use strict';
// Starts an Express app on a free loopback port and sends vector requests to it.

/** listen(app): { base, close } for an app listening on 127.0.0.1, port chosen by the system. */
async function listen(app) {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

/**
 * send(base, c, overrides): sends a vector's request (or a variant: path,
 * header, values, body, contentType) and returns { status, body } with the
 * body parsed as JSON.
 */
async function send(base, c, { path = c.path, header = c.header, values = c.header_values, body = c.body, contentType = 'application/json' } = {}) {
  const headers = new Headers({ 'Content-Type': contentType });
  for (const v of values) headers.append(header, v);
  const res = await fetch(base + path, { method: c.method, headers, body });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { text };
  }
  return { status: res.status, body: json };
}

module.exports = { listen, send };
