// Package pitest is an in-process fake of the Pi Platform API v2, for tests,
// in the spirit of net/http/httptest.
//
// A Server listens on 127.0.0.1 and serves, on one port:
//
//   - the Pi Platform API under /v2 (Server.URL): GET /payments/{id}, POST
//     /payments/{id}/approve, POST /payments/{id}/complete {"txid": ...}, POST
//     /payments/{id}/cancel, GET /payments/incomplete_server_payments and GET
//     /me, with Pi's authentication ("Authorization: Key <server API key>",
//     and "Authorization: Bearer <access token>" for /me), Pi's PaymentDTO
//     and UserDTO (piclient.Payment and piclient.User, written as Pi writes
//     them) and Pi's error bodies {"error": "<code>", "error_message":
//     "<text>"};
//   - a fake Horizon under /horizon (Server.HorizonURL): GET
//     /transactions/{txid} and GET /transactions/{txid}/operations, for the
//     transactions users submitted;
//   - a control API under /control (Server.ControlURL) that lets another
//     process (or a demo web page) do what a Go test does with the Server's
//     methods;
//   - a fake Pi SDK at /pi-sdk.js (with its wallet's style sheet at
//     /pi-sdk.css): a drop-in replacement for https://sdk.minepi.com/pi-sdk.js
//     that plays the Pi Browser and the user's wallet through the control
//     API, so that a Pi app's real frontend runs in any browser against the
//     fake (see docs/fakepi.md).
//
// The test plays the user and the infrastructure with the Server's methods,
// and the code under test plays the app's server through HTTP:
//
//	s := pitest.NewServer()
//	t.Cleanup(s.Close)
//	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14", Memo: "coffee"})
//	// The code under test approves p.Identifier with its API key s.APIKey
//	// against s.URL, then:
//	txid, err := s.SubmitTransaction(p.Identifier) // the user's wallet pays
//	// The code under test completes the payment with txid, then:
//	got, _ := s.Payment(p.Identifier) // got.Status.DeveloperCompleted
//
// Failures are injected per endpoint with InjectFault (error statuses, HTML
// error pages, Retry-After, delays, dropped connections, broken bodies, and
// answers lost after the call took effect), and Calls and CallsFor count the
// requests each endpoint received. SetLatency adds a round-trip time to every
// call.
//
// NewServer picks a free port; NewServerAt listens on a given address, which
// is what the standalone command piclient/pitest/cmd/fakepi uses. Both make
// payments on "Pi Testnet" unless told otherwise, as an app in development
// has; so does `make run`.
//
// # Payment lifecycle
//
// A user-to-app payment is created (CreatePayment, as the Pi SDK does when the
// user starts it), approved by the app (developer_approved), paid by the
// user's wallet (SubmitTransaction: transaction set and verified), then
// completed by the app with that txid (developer_completed). The app may
// cancel it (cancelled) until the wallet submitted a transaction, and the
// user may cancel it (UserCancel: user_cancelled) until it is completed.
//
// # What is known of the real Pi API
//
// Facts the fake reproduces, each with the public trace it comes from:
//
//   - Paths, authentication ("Authorization: Key <key>"; "Bearer <token>"
//     for /me), the PaymentDTO and UserDTO fields: pi-apps/pi-platform-docs,
//     platform_API.md.
//   - Error bodies are {"error": "<code>", "error_message": "<text>"}
//     (pi-apps/pi-nodejs, src/types/errors.ts), except verification_failed,
//     seen as {"error": "verification_failed", "verification_error":
//     "tx_memo_payment_identifier_mismatch"} with no error_message; also
//     seen: "payment_already_linked_with_a_tx" (pi-apps/pi-ruby#4).
//   - The codes of /complete: payment_not_found, already_completed,
//     cancelled_payment, missing_param, missing_txid, not_verified,
//     txid_mismatch, verification_failed; of /cancel: payment_not_found,
//     payment_tx_present, and already_completed, cancelled_payment and
//     forbidden with the payment beside the code (pi-apps/pi-nodejs,
//     src/types/errors.ts). Statuses are not documented.
//   - Cancelling a payment with a transaction is refused with
//     payment_tx_present, "You cannot cancel this payment, because an
//     associated blockchain transaction has been recorded."
//     (pi-apps/pi-ruby#4).
//   - Pi's front servers (nginx, Passenger, Rails) have answered 500 with the
//     HTML page "We're sorry, but something went wrong (500)", content-type
//     text/html (pi-apps/pi-platform-docs#27, #29, #36).
//   - Real PaymentDTOs have amount as a JSON float (1.0), created_at with
//     milliseconds ("2022-05-14T22:59:27.102Z"), 28-character identifiers,
//     UUID user_uids and transaction: null before the user pays
//     (pi-apps/pi-platform-docs#154, pi-apps/pi-ruby#4); transaction._link
//     points at the network's blockchain API.
//   - Pi's Node SDK gives each API call 20 s (pi-apps/pi-nodejs,
//     src/config.ts and src/utils.ts; pi-apps/pi-nodejs#11 "timeout of
//     20000ms exceeded"); the wallet's payment dialog counts down about 60 s
//     and then shows a timeout (pi-apps/pi-platform-docs#91, #21).
//
// # What is a guess
//
// The public traces do not say how the API behaves in every case. The fake
// makes these choices; correct them here if Pi is seen to differ.
//
//  1. Identifiers are 28 random characters from [A-Za-z0-9]; txids are 64
//     random lowercase hexadecimal digits; wallet addresses are random but
//     valid Stellar account ids (StrKey "G...", 56 characters, with checksum).
//     Each app (API key) has one wallet; each user uid keeps one address.
//     The default user_uid is the fixed UUID DefaultUserUID.
//  2. created_at is UTC in RFC 3339 with milliseconds, e.g.
//     "2024-05-04T10:20:30.123Z".
//  3. Amounts are written as a float is printed (1.0, 0.42, 1e-05: at least
//     one decimal, an exponent below 1e-4 or from 1e16), the form seen and
//     the one Python prints; whether Pi writes 1e-05 or 1.0e-05 is unknown.
//     An amount that a float cannot hold exactly is written as given: the
//     fake never rounds. The Server's methods and the control API return
//     the amount as given. split_recipients is always null: it is reported
//     as null in developers' posted answers, but no primary source was
//     found and its meaning is unknown.
//  4. Server calls must carry exactly "Authorization: Key <key>" with a known
//     key; anything else is 401 {"error": "unauthorized"}. Authentication is
//     checked after latency and faults, as by a service behind a proxy.
//  5. A payment belongs to the app whose key created it. Another app's payment
//     is 404 {"error": "payment_not_found"}, exactly like an unknown id.
//     CreatePayment with an unregistered NewPayment.APIKey registers it as
//     AddApp does.
//  6. A user-to-app payment goes from the user's address to the app's wallet;
//     an app-to-user payment from the app's wallet to the user's address. An
//     app-to-user payment cannot be approved (400 "wrong_direction") and needs
//     no approval before its transaction is submitted or it is completed.
//  7. Approve checks, in order: wrong_direction, cancelled_payment (by the
//     developer or the user), already_approved. All are 400; no public trace
//     names approve's codes, so wrong_direction and already_approved are
//     invented.
//  8. Complete checks, in order: already_completed (whatever the txid),
//     cancelled_payment, missing_param (the body is not a JSON object),
//     missing_txid (no txid string, or an empty one), not_verified (no
//     transaction yet), txid_mismatch (txids compared exactly, so case
//     matters: the client sends lower case), verification_failed (Tx.
//     VerificationError, with verification_error and no error_message),
//     not_verified (Tx.Unverified). All are 400.
//  9. Cancel checks, in order: already_completed and cancelled_payment (also
//     when the user cancelled), both with the payment beside the code, then
//     payment_tx_present. All are 400. forbidden is never sent: when Pi
//     sends it is unknown.
//  10. SubmitTransaction refuses a cancelled (by either side) or completed
//     payment, one that already has a transaction, and an unapproved
//     user-to-app payment. UserCancel refuses only a completed payment and may
//     be repeated.
//  11. Pi's verdict on the transaction (transaction.verified and
//     status.transaction_verified) is true unless Tx.Unverified or
//     Tx.VerificationError: the Tx overrides Amount, Memo, To and Failed
//     change only what Horizon shows, so that an on-chain cross-check has
//     something to catch.
//  12. incomplete_server_payments lists the calling app's app-to-user payments
//     that are neither completed nor cancelled by either side, oldest first;
//     an empty list is [] (never null).
//  13. GET /me takes only "Authorization: Bearer <token>"; a missing, unknown
//     or expired token is 401 {"error": "unauthorized"}. A token from AddUser
//     is valid for TokenLifetime (one hour, to the second) and valid_until is
//     that instant; ExpireToken ends it early. Scopes are ["username",
//     "payments"], or ["payments"] and no username field when the username is
//     empty.
//  14. An unknown path is 404 {"error": "not_found"}; a known path with the
//     wrong method is 405 {"error": "method_not_allowed"} with an Allow
//     header. Neither is counted nor faulted.
//  15. Calls are counted when routed (before faults and authentication), per
//     endpoint and per payment id from the path (for Horizon, the payment of
//     the txid, or "" when the txid is unknown).
//  16. A Status fault answers that status with {"error": "<status text in
//     snake case>", "error_message": "pitest: injected fault"}, e.g.
//     "service_unavailable"; Horizon answers a problem+json body instead.
//     With HTML it answers an HTML page instead (text/html): Rails' page
//     for 500, an nginx page such as "<title>403 Forbidden</title>" for any
//     other status.
//  17. Malformed and Truncated keep the status of the real answer (200 when the
//     call succeeded, 4xx when Pi refused it); only the body is broken.
//     Malformed sends an HTML page, as a misbehaving proxy would.
//  18. When the client goes away during a Delay or latency (or the Server is
//     closed), the call is not performed and the connection is closed.
//  19. The faults of an endpoint form a queue tried in order on each call: a
//     Times fault applies and uses up one time; a Fraction fault applies with
//     that probability (ignoring Times, until ClearFaults) or lets the next
//     fault be tried; a fault with neither applies to every call and hides
//     the faults after it.
//  20. SetLatency applies to the API and Horizon, not to the control API.
//  21. Horizon needs no authentication; it prints amounts with exactly 7
//     decimals (rounding anything finer), memo_type "text", ledgers
//     increasing from 1000001, a fee of 100000, times to the second, and an
//     unknown txid (txids compared exactly) is 404 with a problem+json body.
//  22. The control API needs no authentication and allows any origin (CORS
//     "*", with OPTIONS preflight answered 204). Its state errors are 409
//     (payment_cancelled, not_approved, already_submitted,
//     already_completed), bad input is 400 invalid_request, an unknown
//     payment is 404 payment_not_found. Durations are given in milliseconds.
//
// # Control API
//
// All bodies are JSON.
//
//	GET    /control/info                    {api_url, horizon_url, control_url, wallet, network}
//	GET    /control/payments                {"payments": [PaymentDTO]}, all apps, oldest first; ?user_uid=<uid>: that user's only
//	POST   /control/payments                {amount, memo, metadata, user_uid, network, direction, api_key} → 201 PaymentDTO
//	GET    /control/payments/{id}           PaymentDTO
//	POST   /control/payments/{id}/submit    optional {amount, memo, to, failed, unverified, verification_error} → PaymentDTO with its transaction
//	POST   /control/payments/{id}/user_cancel → PaymentDTO
//	POST   /control/faults                  {endpoint, status, html, retry_after_ms, delay_ms, drop, malformed, truncated, drop_response, times, fraction} → 201
//	DELETE /control/faults                  clears every fault → 204
//	GET    /control/calls                   {"get": n, "approve": n, ...}
//	DELETE /control/calls                   resets the counts → 204
//	POST   /control/users                   {uid, access_token, username} → 201 (as AddUser)
//	POST   /control/latency                 {latency_ms} (as SetLatency)
package pitest
