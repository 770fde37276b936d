// The fake Pi SDK (served by fakepi at /pi-sdk.js) driving a frontend written
// the way Pi's reference app writes its own (frontend/index.html, shop.js:
// axios with credentials), served from ANOTHER origin than the backend
// (Caddy with pi_guard in front of examples/goapp), in headless Chromium:
// sign in, pay, cancel, close the wallet (the user who vanishes), a forged
// completion whose refusal the page can read (pi_guard's cors_origins), the
// incomplete payment reported at the next sign-in, and a lost approval
// request that the SDK makes again.
//
// Needs `make build` first. The servers' logs go to out/e2e/crossorigin.log.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { freePort, getJSON, launchBrowser, outDir, root, startStack, watchPage } from "./stack.js";

const here = path.join(root, "e2e");
let stack;
let front; // {server, url}
let context;
let page;
let tmp;
const pageErrors = [];
const foreignRequests = [];

// serveFrontend serves the test frontend on its own port, with index.html's
// placeholders filled in as the reference app's build does.
async function serveFrontend(port, backendURL, sdkURL) {
  const files = {
    "/": ["text/html; charset=utf-8", () =>
      readFileSync(path.join(here, "frontend", "index.html"), "utf8")
        .replaceAll("%BACKEND_URL%", backendURL)
        .replaceAll("%PI_SDK_URL%", sdkURL)],
    "/shop.js": ["text/javascript; charset=utf-8", () => readFileSync(path.join(here, "frontend", "shop.js"))],
    "/axios.min.js": ["text/javascript; charset=utf-8", () => readFileSync(path.join(here, "node_modules", "axios", "dist", "axios.min.js"))],
  };
  const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, "http://x").pathname];
    if (!f) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": f[0], "Cache-Control": "no-store" }).end(f[1]());
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { server, url: `http://localhost:${port}/` };
}

// events returns the page's log, optionally of one payment.
async function events(id) {
  const all = await page.locator("#log li").evaluateAll((lis) => lis.map((li) => ({ ...li.dataset })));
  return id === undefined ? all : all.filter((e) => e.id === id);
}

// waitEvent waits for an event of the page's log and returns it.
async function waitEvent(event, id) {
  const sel = `#log li[data-event="${event}"]` + (id ? `[data-id="${id}"]` : "");
  await page.locator(sel).last().waitFor();
  return page.locator(sel).last().evaluate((li) => ({ ...li.dataset }));
}

// buy starts a payment, waits for the wallet and returns it with the id.
async function buy() {
  const before = (await events()).filter((e) => e.event === "ready_for_approval").length;
  await page.getByRole("button", { name: "Buy an apple pie" }).click();
  const wallet = page.getByRole("dialog", { name: /Pi Wallet/ });
  await wallet.waitFor();
  const ready = (await events()).filter((e) => e.event === "ready_for_approval");
  assert.ok(ready.length > before, "onReadyForServerApproval was called");
  const id = ready.at(-1).id;
  assert.match(id, /^[A-Za-z0-9]{28}$/);
  const approved = await waitEvent("approve", id);
  assert.equal(approved.status, "200", JSON.stringify(approved));
  return { wallet, id };
}

const payment = (id) => getJSON(new URL(`control/payments/${id}`, stack.fakepi));

before(async () => {
  mkdirSync(outDir, { recursive: true });
  tmp = path.join(outDir, "run-crossorigin");
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const port = await freePort();
  const origin = `http://localhost:${port}`;
  // The guard (cors_origins) and the app (its own CORS) allow the frontend.
  stack = await startStack(tmp, { CORS_ORIGINS: origin });
  front = await serveFrontend(port, stack.url.replace(/\/$/, ""), new URL("pi-sdk.js", stack.fakepi).href);
  context = await launchBrowser(path.join(tmp, "profile"));
  page = context.pages()[0] || (await context.newPage());
  watchPage(page, pageErrors, foreignRequests);
});

after(async () => {
  try {
    if (context) await context.close();
  } finally {
    if (front) front.server.close();
    if (stack) {
      await stack.stop();
      writeFileSync(path.join(outDir, "crossorigin.log"), stack.output());
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
});

let uid;

test("sign in: a fake Pi user whose token Pi's GET /v2/me accepts", async () => {
  await page.goto(front.url);
  assert.notEqual(new URL(front.url).origin, new URL(stack.url).origin, "the frontend is on another origin than the guard");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText(/^Signed in as @pioneer_[0-9a-f]{6}$/).waitFor();
  const auth = await page.evaluate(() => window.lastAuth);
  assert.match(auth.user.uid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  uid = auth.user.uid;
  const me = await getJSON(new URL("v2/me", stack.fakepi), { headers: { Authorization: `Bearer ${auth.accessToken}` } });
  assert.equal(me.uid, uid);
  assert.equal(me.username, auth.user.username);
  const orders = await waitEvent("orders");
  assert.equal(orders.status, "200", "the app's own answer is readable across origins");
  assert.equal((await events()).filter((e) => e.event === "incomplete_found").length, 0, "a new user has nothing incomplete");
});

test("pay: approved and completed through the guard, across origins, with credentials", async () => {
  const { wallet, id } = await buy();
  assert.match(await wallet.innerText(), /Pay 3 π/);
  assert.match(await wallet.innerText(), /Order Apple Pie/);
  await page.screenshot({ path: path.join(outDir, "crossorigin-wallet.png") });
  await wallet.getByRole("button", { name: "Pay", exact: true }).click();
  const ready = await waitEvent("ready_for_completion", id);
  assert.match(ready.txid, /^[0-9a-f]{64}$/);
  const done = await waitEvent("complete", id);
  assert.equal(done.status, "200", JSON.stringify(done));
  assert.equal(done.order, "paid");
  const p = await payment(id);
  assert.equal(p.status.developer_completed, true);
  assert.equal(p.user_uid, uid);
  assert.deepEqual(p.metadata, { productId: "apple_pie_1" });
  // The session cookie went along: the app lists the order to this browser.
  const mine = await page.evaluate(async () => (await axios.get(window.__ENV.backendURL + "/orders", { withCredentials: true })).data.orders);
  assert.equal(mine.find((o) => o.payment_id === id)?.status, "paid");
  await waitEvent("create_payment_resolved", id);
});

test("cancel in the wallet: onCancel, cancelled by the user at Pi", async () => {
  const { wallet, id } = await buy();
  await wallet.getByRole("button", { name: "Cancel", exact: true }).click();
  await waitEvent("cancel", id);
  const told = await waitEvent("cancelled", id);
  assert.notEqual(told.status, "0", "the cancel route's answer is readable: " + JSON.stringify(told));
  assert.equal(await wallet.count(), 0, "the wallet closed");
  const p = await payment(id);
  assert.equal(p.status.user_cancelled, true);
  assert.equal(p.transaction, null);
  assert.ok(!(await events(id)).some((e) => e.event.startsWith("ready_for_completion")));
});

let vanished;

test("close the wallet: the user vanished, no callback at all", async () => {
  const { wallet, id } = await buy();
  vanished = id;
  await wallet.getByRole("button", { name: "Close" }).click();
  await waitEvent("create_payment_resolved", id);
  await page.waitForTimeout(1_000); // nothing more may come
  assert.deepEqual(
    (await events(id)).map((e) => e.event),
    ["ready_for_approval", "approve", "create_payment_resolved"],
  );
  const p = await payment(id);
  assert.equal(p.status.developer_approved, true);
  assert.equal(p.status.user_cancelled, false);
  assert.equal(p.status.cancelled, false);
  assert.equal(p.transaction, null);
});

test("a forged completion is refused, and the page can read why", async () => {
  await page.getByRole("button", { name: "Forge a completion" }).click();
  const forged = await waitEvent("forged", vanished);
  // Without the guard's CORS headers axios would see status 0, "Network Error".
  assert.equal(forged.status, "409", JSON.stringify(forged));
  assert.equal(forged.error, "no_transaction");
  assert.equal(forged.retryable, "false");
  const p = await payment(vanished);
  assert.equal(p.status.developer_completed, false);
});

test("paid but never completed: reported at the next sign-in, and completed through the guard", async () => {
  // The payer's completion never reaches the server (the tab died, the
  // network failed): Pi has the transaction, the app does not.
  const completeURL = new URL("payments/complete", stack.url).href;
  await page.route(completeURL, (route) => route.abort());
  const { wallet, id } = await buy();
  await wallet.getByRole("button", { name: "Pay", exact: true }).click();
  const lost = await waitEvent("complete", id);
  assert.equal(lost.status, "0");
  await page.unroute(completeURL);
  let p = await payment(id);
  assert.ok(p.transaction, "the user paid");
  assert.equal(p.status.developer_completed, false);

  // The same user comes back.
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).click();
  const found = await waitEvent("incomplete_found", id);
  assert.equal(found.txid, p.transaction.txid);
  const told = await waitEvent("incomplete", id);
  assert.equal(told.status, "200", JSON.stringify(told));
  assert.equal(told.order, "paid");
  assert.equal((await page.evaluate(() => window.lastAuth)).user.uid, uid, "the same fake user");
  p = await payment(id);
  assert.equal(p.status.developer_completed, true);
});

test("the approval request is lost: the SDK asks again while it waits", async () => {
  const approveURL = new URL("payments/approve", stack.url).href;
  let dropped = 0;
  await page.route(approveURL, (route) => (dropped++ === 0 ? route.abort() : route.continue()));
  const before = (await events()).length;
  const approvals = page.locator('#log li[data-event="approve"]');
  const seen = await approvals.count();
  await page.getByRole("button", { name: "Buy an apple pie" }).click();
  await approvals.nth(seen).waitFor();
  const first = await approvals.nth(seen).evaluate((li) => ({ ...li.dataset }));
  assert.equal(first.status, "0", "the first approval never reached the server");
  const id = first.id;
  // About 10 s later, onReadyForServerApproval again; this time it passes.
  await page.locator(`#log li[data-event="approve"][data-id="${id}"][data-status="200"]`).waitFor({ timeout: 20_000 });
  await page.unroute(approveURL);
  const wallet = page.getByRole("dialog", { name: /Pi Wallet/ });
  await wallet.getByRole("button", { name: "Pay", exact: true }).click();
  const done = await waitEvent("complete", id);
  assert.equal(done.order, "paid", JSON.stringify(done));
  const mine = (await events()).slice(before).filter((e) => e.id === id).map((e) => e.event);
  assert.deepEqual(mine.slice(0, 4), ["ready_for_approval", "approve", "ready_for_approval", "approve"]);
});

test("no script errors, nothing from the internet", async () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreignRequests, []);
});
