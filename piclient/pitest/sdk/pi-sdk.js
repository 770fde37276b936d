// pi-sdk.js: a FAKE Pi SDK, served by the fake Pi platform (package
// piclient/pitest, command fakepi) at GET /pi-sdk.js. Never use it in
// production: it pays with nothing.
//
// It is a drop-in replacement for https://sdk.minepi.com/pi-sdk.js, which
// only works in the Pi Browser: a frontend written for the real SDK (such as
// Pi's reference app, github.com/pi-apps/demo) works unchanged on any browser
// once its <script src> names this file instead:
//
//   <script src="http://127.0.0.1:8090/pi-sdk.js"></script>
//   <script>Pi.init({ version: "2.0", sandbox: true })</script>
//
// It finds the fake platform from its own URL (document.currentScript.src):
// the control API is at "control/" next to this file, also when a proxy
// serves the platform under a prefix (/fakepi/pi-sdk.js: /fakepi/control/).
// Nothing is loaded from the internet. What it does, with the control API:
//
//   Pi.authenticate   signs in this browser's fake user (kept in localStorage,
//                     made on first use: a UUID uid and a username), with a
//                     fresh access token that the platform's GET /v2/me
//                     accepts (POST /control/users); then calls
//                     onIncompletePaymentFound for the user's payment that has
//                     a transaction but is not completed, if any.
//   Pi.createPayment  creates the payment (POST /control/payments), calls
//                     onReadyForServerApproval(paymentId) and waits for the
//                     app's server to approve it (polling GET
//                     /control/payments/{id}; like the real SDK it calls
//                     onReadyForServerApproval again while it waits); then
//                     shows a wallet dialog: Pay submits the transaction
//                     (POST .../submit) and calls
//                     onReadyForServerCompletion(paymentId, txid); Cancel
//                     cancels it as the user (POST .../user_cancel) and calls
//                     onCancel(paymentId); Close (or Escape) is a user who
//                     walks away: no callback at all.
//
// docs/fakepi.md describes it in full.
(function () {
  "use strict";

  const POLL_MS = 200; // how often the approval is checked
  const REAPPROVE_MS = 10000; // onReadyForServerApproval again after this long without approval
  const APPROVAL_TIMEOUT_MS = 60000; // the real wallet gives up after about a minute
  const CALL_TIMEOUT_MS = 20000; // Pi's SDKs give each API call 20 s

  // The fake platform is where this script came from.
  const script =
    document.currentScript || Array.from(document.getElementsByTagName("script")).find((s) => /\/pi-sdk\.js(\?|$)/.test(s.src));
  const BASE = script && script.src ? new URL(".", script.src).href : null;
  const CONTROL = BASE && new URL("control/", BASE).href;
  const USER_KEY = "fakepi-sdk-user " + BASE; // this browser's fake user, per platform

  let initialized = false;
  let sandbox = false;
  let user = null; // {uid, username} after authenticate
  let onIncomplete = null;

  function randomHex(bytes) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // uuid is a random version 4 UUID, as Pi's uids are (crypto.randomUUID
  // needs a secure context; plain http on a LAN address is not one).
  function uuid() {
    const h = randomHex(16).split("");
    h[12] = "4";
    h[16] = "89ab"[parseInt(h[16], 16) & 3];
    const s = h.join("");
    return [s.slice(0, 8), s.slice(8, 12), s.slice(12, 16), s.slice(16, 20), s.slice(20)].join("-");
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // control calls the fake platform's control API and returns its JSON.
  async function control(method, path, body) {
    if (!CONTROL) throw new Error("Pi (fake SDK): cannot tell where the fake Pi platform is: load pi-sdk.js with a plain <script src=...>");
    let res;
    try {
      res = await fetch(CONTROL + path, {
        method,
        cache: "no-store",
        headers: body === undefined ? {} : { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
      });
    } catch (e) {
      throw new Error("Pi (fake SDK): the fake Pi platform is not reachable at " + CONTROL + " (is fakepi running?)");
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

  const path = (id, action) => "payments/" + encodeURIComponent(id) + (action ? "/" + action : "");

  // incompleteOf returns the user's payment that Pi would report incomplete:
  // a transaction was submitted, the app's server has not completed it, and
  // nobody cancelled it.
  async function incompleteOf(uid) {
    const { payments } = await control("GET", "payments?user_uid=" + encodeURIComponent(uid));
    return payments.find(
      (p) => p.transaction && !p.status.developer_completed && !p.status.cancelled && !p.status.user_cancelled,
    );
  }

  // report hands an incomplete payment to the app's callback; what the
  // callback does (or throws) is the app's business.
  function report(payment) {
    try {
      Promise.resolve(onIncomplete(payment)).catch((e) => console.error("onIncompletePaymentFound failed:", e));
    } catch (e) {
      console.error("onIncompletePaymentFound failed:", e);
    }
  }

  // signIn returns this browser's fake user, made on first use.
  function signIn() {
    try {
      const u = JSON.parse(localStorage.getItem(USER_KEY) || "null");
      if (u && typeof u.uid === "string" && typeof u.username === "string") return u;
    } catch (e) {
      // no storage, or garbage in it: a new user
    }
    const u = { uid: uuid(), username: "pioneer_" + randomHex(3) };
    try {
      localStorage.setItem(USER_KEY, JSON.stringify(u));
    } catch (e) {
      // storage unavailable: the user lasts as long as the page
    }
    return u;
  }

  // waitForApproval polls the payment until the app's server approved it,
  // asking again with onReadyForServerApproval every REAPPROVE_MS.
  async function waitForApproval(id, cb) {
    const start = Date.now();
    let asked = start;
    for (;;) {
      const p = await control("GET", path(id));
      if (p.status.cancelled || p.status.user_cancelled) return p;
      if (p.status.developer_approved) return p;
      if (Date.now() - start > APPROVAL_TIMEOUT_MS) {
        throw Object.assign(new Error("Pi: the app's server did not approve the payment in time"), { payment: p });
      }
      if (Date.now() - asked > REAPPROVE_MS) {
        asked = Date.now();
        cb.onReadyForServerApproval(id);
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

  // The wallet's look, from the platform (a <link>, so that a page whose
  // Content-Security-Policy allows the platform's origin needs nothing else).
  function addStyle() {
    if (!BASE || !document.head || document.querySelector("link[data-fakepi-sdk]")) return;
    const link = el("link", { rel: "stylesheet", href: new URL("pi-sdk.css", BASE).href });
    link.dataset.fakepiSdk = "";
    document.head.append(link);
  }

  // wallet shows the fake Pi Wallet and resolves to "pay", "cancel" or
  // "close".
  function wallet(payment) {
    addStyle();
    return new Promise((resolve) => {
      const pay = el("button", { type: "button", className: "pi-wallet-pay", textContent: "Pay" });
      const cancel = el("button", { type: "button", className: "pi-wallet-cancel", textContent: "Cancel" });
      const close = el("button", { type: "button", className: "pi-wallet-close", textContent: "×" });
      close.setAttribute("aria-label", "Close");
      close.title = "Close the wallet without paying or cancelling";
      const row = (k, v) => el("div", {}, el("dt", { textContent: k }), el("dd", { textContent: v }));
      const to = String(payment.to_address || "");
      const dlg = el(
        "dialog",
        { className: "pi-wallet" },
        el(
          "div",
          { className: "pi-wallet-head" },
          el("h2", { id: "pi-wallet-title" }, "Pi Wallet ", el("span", { className: "pi-wallet-badge", textContent: "fake" })),
          close,
        ),
        el("p", { id: "pi-wallet-desc", className: "pi-wallet-amount", textContent: "Pay " + payment.amount + " π" }),
        el(
          "dl",
          {},
          row("Memo", payment.memo),
          row("To", to.length > 20 ? to.slice(0, 10) + "…" + to.slice(-6) : to),
          row("Network", payment.network + (sandbox ? " (sandbox)" : "")),
        ),
        el("div", { className: "pi-wallet-actions" }, cancel, pay),
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
      pay.addEventListener("click", () => finish("pay"));
      cancel.addEventListener("click", () => finish("cancel"));
      close.addEventListener("click", () => finish("close"));
      dlg.addEventListener("cancel", (ev) => {
        ev.preventDefault(); // Escape closes the wallet, as the × does
        finish("close");
      });
      document.body.append(dlg);
      dlg.showModal();
      pay.focus();
    });
  }

  async function runPayment(data, cb) {
    let payment;
    try {
      if (!user) throw new Error("Pi: call Pi.authenticate with the payments scope first");
      // As the real SDK: a payment of this user with a transaction that the
      // app's server has not completed blocks new ones.
      const open = await incompleteOf(user.uid);
      if (open) {
        report(open);
        throw new Error("Pi: a previous payment of this user is incomplete (" + open.identifier + "): the app's server must complete it first");
      }
      payment = await control("POST", "payments", {
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
      payment = await waitForApproval(id, cb);
      if (payment.status.cancelled || payment.status.user_cancelled) {
        cb.onCancel(id); // cancelled while waiting (by the app's server)
        return payment;
      }
      const choice = await wallet(payment);
      if (choice === "close") {
        return payment; // the user walked away: no callback, as in the Pi Browser
      }
      if (choice === "cancel") {
        payment = await control("POST", path(id, "user_cancel"));
        cb.onCancel(id);
        return payment;
      }
      payment = await control("POST", path(id, "submit"));
      cb.onReadyForServerCompletion(id, payment.transaction.txid);
    } catch (err) {
      cb.onError(err, err.payment || payment);
    }
    return payment;
  }

  window.Pi = Object.freeze({
    // init takes {version: "2.0", sandbox}; sandbox only shows in the wallet.
    init(config) {
      if (!config || config.version !== "2.0") throw new Error('Pi.init: version must be "2.0"');
      sandbox = Boolean(config.sandbox);
      initialized = true;
      addStyle(); // ahead of the first wallet, so that it never shows unstyled
      return Promise.resolve();
    },

    // authenticate resolves to {accessToken, user: {uid, username, roles}}
    // (Pi's reference app reads user.roles; a fake user has none). As the
    // real SDK does today, every scope is granted whatever scopes asks.
    async authenticate(scopes, onIncompletePaymentFound) {
      if (!initialized) throw new Error("Pi.authenticate: call Pi.init first");
      if (!Array.isArray(scopes)) throw new Error("Pi.authenticate: scopes must be an array");
      if (typeof onIncompletePaymentFound !== "function") {
        throw new Error("Pi.authenticate: onIncompletePaymentFound must be a function");
      }
      const u = signIn();
      const accessToken = "fakepi-" + randomHex(24);
      await control("POST", "users", { uid: u.uid, access_token: accessToken, username: u.username });
      user = u;
      onIncomplete = onIncompletePaymentFound;
      const open = await incompleteOf(u.uid);
      if (open) report(open);
      return { accessToken, user: { uid: u.uid, username: u.username, roles: [] } };
    },

    // createPayment runs the payment flow and reports it through the
    // callbacks; the promise resolves to the payment as the platform last
    // showed it (undefined when it could not be created).
    createPayment(paymentData, callbacks) {
      if (!initialized) throw new Error("Pi.createPayment: call Pi.init first");
      for (const name of ["onReadyForServerApproval", "onReadyForServerCompletion", "onCancel", "onError"]) {
        if (!callbacks || typeof callbacks[name] !== "function") {
          throw new Error("Pi.createPayment: callback " + name + " is required");
        }
      }
      return runPayment(paymentData || {}, callbacks);
    },

    // openShareDialog has no phone to share with: it logs what would be shared.
    openShareDialog(title, message) {
      console.info("Pi.openShareDialog (fake SDK):", title, message);
    },
  });
})();
