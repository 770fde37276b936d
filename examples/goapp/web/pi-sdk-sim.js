// pi-sdk-sim.js: a small SIMULATED Pi SDK, for the local demo only.
//
// It has the shape of the real Pi SDK 2.0 (window.Pi: init, authenticate,
// createPayment and its four callbacks), so that app.js is written exactly as
// a real Pi app's frontend. Instead of the Pi Browser and the user's wallet it
// drives the local fake Pi platform through its control API, which Caddy
// proxies under /fakepi/ (see examples/run.Caddyfile and piclient/pitest):
//
//   authenticate   POST /fakepi/control/users (a fresh user per page load)
//   createPayment  POST /fakepi/control/payments, then calls
//                  onReadyForServerApproval and waits (GET /fakepi/control/
//                  payments/{id}) until the app's server approved it; then a
//                  simulated wallet dialog: "Sign and submit" posts
//                  .../{id}/submit and calls onReadyForServerCompletion with the
//                  txid, "Cancel" posts .../{id}/user_cancel and calls onCancel.
//
// In a real app, load https://sdk.minepi.com/pi-sdk.js instead of this file.
(function () {
  "use strict";

  const CONTROL = "/fakepi/control";
  const POLL_MS = 150;
  const APPROVAL_TIMEOUT_MS = 30000;

  let initialized = false;
  let sandbox = false;
  let user = null;

  function randomHex(bytes) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // control calls the fake platform's control API and returns its JSON.
  async function control(method, path, body) {
    let res;
    try {
      res = await fetch(CONTROL + path, {
        method,
        cache: "no-store",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new Error("the fake Pi platform is not reachable at " + CONTROL + "/ (start the demo with `make run`)");
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      // not JSON: reported below by status
    }
    if (!res.ok) {
      const err = new Error("Pi: " + ((data && (data.error_message || data.error)) || "HTTP " + res.status));
      err.status = res.status;
      err.code = data && data.error;
      throw err;
    }
    return data;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // waitForApproval polls the payment until the app's server approved it.
  async function waitForApproval(id) {
    const deadline = Date.now() + APPROVAL_TIMEOUT_MS;
    for (;;) {
      const p = await control("GET", "/payments/" + encodeURIComponent(id));
      if (p.status.cancelled || p.status.user_cancelled) {
        throw Object.assign(new Error("Pi: the payment was cancelled before it was approved"), { payment: p });
      }
      if (p.status.developer_approved) return p;
      if (Date.now() > deadline) {
        throw Object.assign(new Error("Pi: the app's server did not approve the payment in time"), { payment: p });
      }
      await sleep(POLL_MS);
    }
  }

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c);
    return e;
  }

  // wallet shows the simulated Pi Wallet and resolves to "submit" or "cancel".
  function wallet(payment) {
    return new Promise((resolve) => {
      const submit = el("button", { type: "button", className: "pi-wallet-submit", textContent: "Sign and submit" });
      const cancel = el("button", { type: "button", className: "pi-wallet-cancel", textContent: "Cancel" });
      const row = (k, v) => el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: v }));
      const dlg = el(
        "dialog",
        { className: "pi-wallet" },
        el("h2", { id: "pi-wallet-title" }, "Pi Wallet ", el("span", { className: "pi-wallet-badge", textContent: "simulated" })),
        el("p", { id: "pi-wallet-desc", className: "pi-wallet-amount", textContent: "Pay " + payment.amount + " π" }),
        el(
          "dl",
          {},
          row("Memo", payment.memo),
          row("To", payment.to_address.slice(0, 10) + "…" + payment.to_address.slice(-6)),
          row("Network", payment.network + (sandbox ? " (sandbox)" : "")),
        ),
        el("div", { className: "pi-wallet-actions" }, cancel, submit),
      );
      dlg.setAttribute("aria-labelledby", "pi-wallet-title");
      dlg.setAttribute("aria-describedby", "pi-wallet-desc");
      let done = false;
      const finish = (choice) => {
        if (done) return;
        done = true;
        dlg.close();
        dlg.remove();
        resolve(choice);
      };
      submit.addEventListener("click", () => finish("submit"));
      cancel.addEventListener("click", () => finish("cancel"));
      dlg.addEventListener("cancel", (ev) => {
        ev.preventDefault(); // Escape cancels the payment, as the Cancel button does
        finish("cancel");
      });
      document.body.append(dlg);
      dlg.showModal();
      submit.focus();
    });
  }

  async function runPayment(data, cb) {
    let payment;
    try {
      if (!user) throw new Error("Pi: call Pi.authenticate with the payments scope first");
      payment = await control("POST", "/payments", {
        amount: data.amount,
        memo: data.memo,
        metadata: data.metadata === undefined ? {} : data.metadata,
        user_uid: user.uid,
      });
    } catch (err) {
      cb.onError(err);
      return undefined;
    }
    const id = payment.identifier;
    try {
      cb.onReadyForServerApproval(id);
      payment = await waitForApproval(id);
      if ((await wallet(payment)) === "cancel") {
        payment = await control("POST", "/payments/" + encodeURIComponent(id) + "/user_cancel");
        cb.onCancel(id);
        return payment;
      }
      payment = await control("POST", "/payments/" + encodeURIComponent(id) + "/submit");
      cb.onReadyForServerCompletion(id, payment.transaction.txid);
    } catch (err) {
      cb.onError(err, err.payment || payment);
    }
    return payment;
  }

  window.Pi = Object.freeze({
    init(config) {
      if (!config || config.version !== "2.0") throw new Error('Pi.init: version must be "2.0"');
      sandbox = Boolean(config.sandbox);
      initialized = true;
    },

    // authenticate signs in a fresh simulated user. Being new, the user has
    // no incomplete payment, so onIncompletePaymentFound is never called.
    async authenticate(scopes, onIncompletePaymentFound) {
      if (!initialized) throw new Error("Pi.authenticate: call Pi.init first");
      if (!Array.isArray(scopes)) throw new Error("Pi.authenticate: scopes must be an array");
      if (typeof onIncompletePaymentFound !== "function") {
        throw new Error("Pi.authenticate: onIncompletePaymentFound must be a function");
      }
      const uid = "sim-" + randomHex(8);
      const accessToken = "sim-token-" + randomHex(16);
      const username = scopes.includes("username") ? "pioneer_" + randomHex(2) : "";
      await control("POST", "/users", { uid, access_token: accessToken, username });
      user = username ? { uid, username } : { uid };
      return { accessToken, user: { ...user } };
    },

    // createPayment runs the whole payment flow and reports it through the
    // callbacks; the promise resolves to the payment as the fake platform last
    // showed it (undefined when it could not be created).
    createPayment(paymentData, callbacks) {
      if (!initialized) throw new Error("Pi.createPayment: call Pi.init first");
      for (const name of ["onReadyForServerApproval", "onReadyForServerCompletion", "onCancel", "onError"]) {
        if (!callbacks || typeof callbacks[name] !== "function") {
          throw new Error("Pi.createPayment: callback " + name + " is required");
        }
      }
      return runPayment(paymentData, callbacks);
    },
  });
})();
