// attacker.js: the demo's attacker panel. It is not part of a Pi app: it plays
// a user who wants the pie without paying, calling the fake Pi platform
// (/fakepi/control, as a hacked SDK would) and the app's routes by hand.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function randomHex(bytes) {
    const b = new Uint8Array(bytes);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function b64url(s) {
    const bytes = new TextEncoder().encode(s);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function send(method, path, data, headers) {
    try {
      const res = await fetch(path, {
        method,
        cache: "no-store",
        headers: Object.assign(data === undefined ? {} : { "Content-Type": "application/json" }, headers || {}),
        body: data === undefined ? undefined : JSON.stringify(data),
      });
      let body = null;
      try {
        body = await res.json();
      } catch (e) {
        // not JSON
      }
      return { ok: res.ok, status: res.status, body };
    } catch (err) {
      return { ok: false, status: 0, body: { error: "network_error", message: String(err) } };
    }
  }

  const short = (s) => (s && s.length > 14 ? s.slice(0, 8) + "…" + s.slice(-4) : s);

  // A payment the attacker starts at Pi, as the SDK would, and never pays.
  async function newPayment() {
    const r = await send("POST", "/fakepi/control/payments", { amount: 3.14, memo: "Apple pie (attacker)" });
    if (!r.ok) throw new Error("could not create a payment at the fake Pi platform: " + r.status);
    return r.body;
  }

  // sha256 is the body digest of the bsh claim, base64url.
  async function sha256(s) {
    if (!crypto.subtle) return b64url(randomHex(32)); // not a secure context; any value will do
    const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
    return btoa(String.fromCharCode(...d)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // forge makes a token that looks like the guard's: right header, claims
  // saying "completed", and a signature made without the guard's secret.
  async function forge(payment, txid, body) {
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: "HS256", typ: "pi-payment-verified+jwt" };
    const claims = {
      iss: "caddy-pi-guard",
      aud: "pi-app",
      sub: payment.identifier,
      iat: now,
      exp: now + 60,
      jti: randomHex(16),
      kind: "verified",
      phase: "complete",
      payment: Object.assign({}, payment, {
        status: { developer_approved: true, transaction_verified: true, developer_completed: true, cancelled: false, user_cancelled: false },
        transaction: { txid, verified: true, _link: "" },
      }),
      htm: "POST",
      htu: "/payments/complete",
      bsh: await sha256(body),
    };
    return b64url(JSON.stringify(header)) + "." + b64url(JSON.stringify(claims)) + "." + b64url(randomHex(32));
  }

  // panel renders one attack: its log lines and its verdict.
  function panel(id) {
    const root = $(id);
    const log = root.querySelector(".log");
    const verdict = root.querySelector(".verdict");
    root.dataset.verdict = "running";
    verdict.textContent = "Attacking…";
    log.replaceChildren();
    const line = (kind, text, code) => {
      const li = document.createElement("li");
      li.className = kind;
      if (code) {
        const c = document.createElement("span");
        c.className = "code";
        c.textContent = code;
        li.append(c, " ");
      }
      li.append(text);
      log.append(li);
      return li;
    };
    return {
      info(text, mono) {
        const li = line("info", text);
        if (mono) {
          const c = document.createElement("code");
          c.textContent = mono;
          li.append(" ", c);
        }
      },
      // answer logs an answer to a forbidden request; it is rejected unless 2xx.
      answer(text, r) {
        const code = r.status ? r.status + " " + ((r.body && r.body.error) || (r.ok ? "OK" : "error")) : "no answer";
        const li = line(r.ok ? "accepted" : "rejected", text, code);
        if (r.body && r.body.message) {
          const m = document.createElement("span");
          m.className = "message";
          m.textContent = r.body.message;
          li.append(m);
        }
        return !r.ok;
      },
      async order(paymentId) {
        const r = await send("GET", "/orders");
        const o = r.ok ? r.body.orders.find((x) => x.payment_id === paymentId) : undefined;
        const paid = Boolean(o && o.status === "paid");
        const text = o ? "the app's order is " + o.status : "the app has no order for it";
        line(paid ? "accepted" : "unpaid", "GET /orders: " + text, paid ? "PAID" : "not paid");
        document.dispatchEvent(new Event("orders-changed"));
        return !paid && r.ok;
      },
      done(rejected) {
        root.dataset.verdict = rejected ? "rejected" : "accepted";
        verdict.textContent = rejected
          ? "REJECTED: no pie without paying."
          : "ACCEPTED: the attack worked. This must never happen!";
      },
      fail(err) {
        root.dataset.verdict = "error";
        verdict.textContent = "Could not run the attack: " + err.message;
      },
    };
  }

  // Attack 1: complete a payment nobody approved or paid, with a made-up txid.
  async function fakeCompletion() {
    const ui = panel("attack-fake");
    try {
      const p = await newPayment();
      ui.info("Started payment " + short(p.identifier) + " at Pi; it is never approved or paid.");
      const txid = randomHex(32);
      const r = await send("POST", "/payments/complete", { paymentId: p.identifier, txid });
      let rejected = ui.answer("POST /payments/complete with a made-up txid " + short(txid), r);
      rejected = (await ui.order(p.identifier)) && rejected;
      ui.done(rejected);
    } catch (err) {
      ui.fail(err);
    }
  }

  // Attack 2: send a forged Pi-Payment-Verified header with the completion of
  // an approved, unpaid payment. The guard removes it before anything else.
  async function forgeHeader() {
    const ui = panel("attack-forge");
    try {
      const p = await newPayment();
      const a = await send("POST", "/payments/approve", { paymentId: p.identifier });
      ui.info(
        "Started payment " + short(p.identifier) + (a.ok
          ? " and had it approved: the app now has a pending order. It is never paid."
          : "; its approval failed (" + a.status + "). It is never paid."),
      );
      const txid = randomHex(32);
      const body = { paymentId: p.identifier, txid };
      const token = await forge(p, txid, JSON.stringify(body));
      ui.info("Forged a " + token.length + "-character token that claims “completed”:", "Pi-Payment-Verified: " + token.slice(0, 30) + "…");
      const r = await send("POST", "/payments/complete", body, { "Pi-Payment-Verified": token });
      let rejected = ui.answer("POST /payments/complete with the forged header", r);
      rejected = (await ui.order(p.identifier)) && rejected;
      ui.done(rejected);
    } catch (err) {
      ui.fail(err);
    }
  }

  function guard(button, attack) {
    button.disabled = false;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await attack();
      } finally {
        button.disabled = false;
      }
    });
  }

  guard($("attack-fake-btn"), fakeCompletion);
  guard($("attack-forge-btn"), forgeHeader);
})();
