// The cross-origin test frontend: the reference app's callbacks (pi-apps/demo,
// frontend/src/Shop/index.tsx), in plain JS, each logging what happened into
// #log for the test to read: one <li> per event, with data-event, data-id and,
// for the backend's answers, data-status and data-error (the guard's or the
// app's "error" code, or "Network Error" when the browser hid the answer).
"use strict";

(function () {
  const backendURL = window.__ENV.backendURL;
  const axiosClient = axios.create({ baseURL: backendURL, timeout: 20000, withCredentials: true });
  // As the reference app sends it (a request header that does nothing, but
  // that the app's preflight answer must allow).
  const config = { headers: { "Content-Type": "application/json", "Access-Control-Allow-Origin": "*" } };

  let user = null;
  let lastPaymentId = null;

  function log(event, fields) {
    const li = document.createElement("li");
    li.dataset.event = event;
    for (const [k, v] of Object.entries(fields || {})) li.dataset[k] = v === undefined || v === null ? "" : String(v);
    li.textContent = event + " " + JSON.stringify(fields || {});
    document.getElementById("log").append(li);
  }

  // post sends to the backend and logs its answer, readable or not.
  async function post(event, id, route, body) {
    try {
      const res = await axiosClient.post(route, body, config);
      const order = res.data && res.data.order;
      log(event, { id, status: res.status, order: order ? order.status : "" });
      return res;
    } catch (err) {
      const res = err.response;
      log(event, {
        id,
        status: res ? res.status : 0,
        error: res && res.data ? res.data.error : err.message,
        retryable: res && res.data ? res.data.retryable : "",
      });
      return null;
    }
  }

  const onIncompletePaymentFound = (payment) => {
    log("incomplete_found", { id: payment.identifier, txid: payment.transaction && payment.transaction.txid });
    return post("incomplete", payment.identifier, "/payments/incomplete", { payment });
  };

  const onReadyForServerApproval = (paymentId) => {
    lastPaymentId = paymentId;
    log("ready_for_approval", { id: paymentId });
    post("approve", paymentId, "/payments/approve", { paymentId });
  };

  const onReadyForServerCompletion = (paymentId, txid) => {
    log("ready_for_completion", { id: paymentId, txid });
    post("complete", paymentId, "/payments/complete", { paymentId, txid });
  };

  const onCancel = (paymentId) => {
    log("cancel", { id: paymentId });
    return post("cancelled", paymentId, "/payments/cancelled_payment", { paymentId });
  };

  const onError = (error, payment) => {
    log("error", { id: payment && payment.identifier, message: error.message });
  };

  async function signIn() {
    const scopes = ["username", "payments", "roles", "in_app_notifications"];
    const authResult = await window.Pi.authenticate(scopes, onIncompletePaymentFound);
    user = authResult.user;
    window.lastAuth = authResult; // for the test: the token must work with GET /v2/me
    document.getElementById("user").textContent = "Signed in as @" + user.username;
    // The reference app posts the auth result to its backend; this one lists
    // its orders (which starts the backend's session cookie).
    try {
      const res = await axiosClient.get("/orders");
      log("orders", { status: res.status, count: res.data.orders.length });
    } catch (err) {
      log("orders", { status: err.response ? err.response.status : 0, error: err.message });
    }
    document.getElementById("buy").disabled = false;
    document.getElementById("forge").disabled = false;
  }

  async function orderProduct(memo, amount, paymentMetadata) {
    const paymentData = { amount, memo, metadata: paymentMetadata };
    const callbacks = { onReadyForServerApproval, onReadyForServerCompletion, onCancel, onError };
    const payment = await window.Pi.createPayment(paymentData, callbacks);
    log("create_payment_resolved", { id: payment && payment.identifier });
  }

  // forge posts a completion with a made-up txid for the last payment: what
  // a hacked SDK would send. The guard refuses it; the page must be able to
  // read why.
  function forge() {
    post("forged", lastPaymentId, "/payments/complete", { paymentId: lastPaymentId, txid: "ab".repeat(32) });
  }

  document.getElementById("signin").addEventListener("click", signIn);
  document.getElementById("buy").addEventListener("click", () => orderProduct("Order Apple Pie", 3, { productId: "apple_pie_1" }));
  document.getElementById("forge").addEventListener("click", forge);
})();
