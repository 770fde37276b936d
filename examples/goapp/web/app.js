// app.js: the shop's frontend, written the way a real Pi app's frontend is
// (compare the reference app, github.com/pi-apps/demo): the Pi SDK runs the
// payment and calls back; each callback posts to the app's server, which here
// is Caddy with pi_guard in front of examples/goapp. The guard talks to the
// Pi Platform API; the app marks the order paid only when the completion
// reaches it with a valid Pi-Payment-Verified header.
"use strict";

(function () {
  const product = { amount: 3.14, memo: "Apple pie", metadata: { productId: "apple_pie" } };
  const scopes = ["username", "payments"];

  const $ = (id) => document.getElementById(id);
  const payButton = $("pay");
  let paying = false;

  // post sends JSON to the app's server and returns {ok, status, body}.
  async function post(path, data) {
    try {
      const res = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(data),
      });
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        // not JSON (a 404 page, say)
      }
      return { ok: res.ok, status: res.status, body };
    } catch (err) {
      return { ok: false, status: 0, body: { error: "network_error", message: String(err) } };
    }
  }

  // answer describes an answer of the app's server: "200 OK" or "409 no_transaction".
  function answer(r) {
    if (r.status === 0) return "no answer (" + r.body.message + ")";
    return r.status + " " + (r.ok ? "OK" : (r.body && r.body.error) || "error");
  }

  const short = (s) => (s && s.length > 14 ? s.slice(0, 8) + "…" + s.slice(-4) : s);

  // --- rendering -----------------------------------------------------------

  function step(name, state, detail) {
    const li = document.querySelector('#steps li[data-step="' + name + '"]');
    li.dataset.state = state;
    li.querySelector(".detail").textContent = detail || "";
  }

  function resetSteps() {
    for (const li of document.querySelectorAll("#steps li")) {
      li.dataset.state = "todo";
      li.querySelector(".detail").textContent = "";
    }
  }

  function orderStatus(status, text) {
    const p = $("order-status");
    p.dataset.status = status;
    p.textContent = text;
  }

  function finish() {
    paying = false;
    payButton.disabled = false;
    refreshOrders();
  }

  async function refreshOrders() {
    const tbody = $("orders-body");
    let orders;
    try {
      const res = await fetch("/orders", { cache: "no-store" });
      orders = (await res.json()).orders;
    } catch (err) {
      tbody.replaceChildren(row(["Could not load /orders: " + err], "muted"));
      return;
    }
    if (!orders.length) {
      tbody.replaceChildren(row(["No orders yet."], "muted"));
      return;
    }
    orders.sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
    tbody.replaceChildren(
      ...orders.map((o) => {
        const tr = document.createElement("tr");
        tr.dataset.paymentId = o.payment_id;
        tr.dataset.status = o.status;
        for (const [text, cls] of [
          [short(o.payment_id), "mono"],
          [o.amount + " π", ""],
          [o.memo, ""],
          [o.status, "status status-" + o.status],
          [String(o.deliveries), ""],
        ]) {
          const td = document.createElement("td");
          td.textContent = text;
          if (cls) td.className = cls;
          if (cls === "mono") td.title = o.payment_id;
          tr.append(td);
        }
        return tr;
      }),
    );
  }

  function row(cells, cls) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 5;
    td.className = cls || "";
    td.textContent = cells.join(" ");
    tr.append(td);
    return tr;
  }

  // --- the Pi SDK callbacks ------------------------------------------------

  // The SDK reports a payment the user started earlier and that is not
  // finished; the app's server should complete or cancel it.
  function onIncompletePaymentFound(payment) {
    return post("/payments/incomplete", { payment });
  }

  async function onReadyForServerApproval(paymentId) {
    step("created", "done", "id " + paymentId);
    step("approved", "active", "asking the app's server…");
    const r = await post("/payments/approve", { paymentId });
    if (r.ok) {
      step("approved", "done", answer(r) + ": the guard approved it at Pi; the app recorded a pending order");
      step("submitted", "active", "waiting for you in the Pi wallet…");
    } else {
      step("approved", "failed", answer(r) + (r.body && r.body.message ? ": " + r.body.message : ""));
      orderStatus("failed", "Not paid: the server did not approve the payment");
    }
  }

  async function onReadyForServerCompletion(paymentId, txid) {
    step("submitted", "done", "txid " + short(txid));
    step("completed", "active", "asking the app's server…");
    const r = await post("/payments/complete", { paymentId, txid });
    const order = r.body && r.body.order;
    if (r.ok) {
      step("completed", "done", answer(r) + ": Pi confirmed the transaction; the guard forwarded it with a signed header");
    } else {
      step("completed", "failed", answer(r) + (r.body && r.body.message ? ": " + r.body.message : ""));
    }
    // The app's answer decides: it says "paid" only after it verified the
    // Pi-Payment-Verified header.
    if (r.ok && order && order.payment_id === paymentId && order.status === "paid") {
      step("paid", "done", "order " + short(paymentId) + " is paid" + (r.body.already_recorded ? " (already recorded)" : ""));
      orderStatus("paid", "PAID: " + order.amount + " π for " + order.memo + ". Enjoy your pie!");
    } else {
      step("paid", "failed", "the app did not mark the order paid");
      orderStatus("not_paid", "Not paid: " + answer(r));
    }
    finish();
  }

  async function onCancel(paymentId) {
    // The reference app tells its server, which marks the order cancelled.
    const r = await post("/payments/cancelled_payment", { paymentId });
    step("submitted", "failed", "cancelled in the wallet; POST /payments/cancelled_payment: " + answer(r));
    orderStatus("cancelled", "Cancelled: nothing was paid (the app's cancel route answered " + answer(r) + ")");
    finish();
  }

  function onError(error, payment) {
    const active = document.querySelector('#steps li[data-state="active"]');
    if (active) step(active.dataset.step, "failed", error.message);
    orderStatus("failed", "Not paid: " + error.message + (payment ? " (payment " + short(payment.identifier) + ")" : ""));
    finish();
  }

  async function pay() {
    if (paying) return;
    paying = true;
    payButton.disabled = true;
    resetSteps();
    step("created", "active", "the Pi SDK is creating the payment…");
    orderStatus("paying", "Paying…");
    try {
      await Pi.createPayment(product, { onReadyForServerApproval, onReadyForServerCompletion, onCancel, onError });
    } catch (err) {
      onError(err);
    }
  }

  // --- start -----------------------------------------------------------------

  async function signIn() {
    try {
      const auth = await Pi.authenticate(scopes, onIncompletePaymentFound);
      $("user").textContent = "Signed in as @" + auth.user.username + " (simulated Pi user)";
      payButton.disabled = false;
    } catch (err) {
      $("user").textContent = "Could not sign in: " + err.message;
    }
  }

  payButton.addEventListener("click", pay);
  $("refresh").addEventListener("click", refreshOrders);
  document.addEventListener("orders-changed", refreshOrders);
  Pi.init({ version: "2.0", sandbox: true });
  signIn();
  refreshOrders();
})();
