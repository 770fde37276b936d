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
//     and UserDTO (piclient.Payment and piclient.User) and Pi's error bodies
//     {"error": "<code>", "error_message": "<text>"};
//   - a fake Horizon under /horizon (Server.HorizonURL): GET
//     /transactions/{txid} and GET /transactions/{txid}/operations, for the
//     transactions users submitted;
//   - a control API under /control (Server.ControlURL) that lets another
//     process (or a demo web page) do what a Go test does with the Server's
//     methods.
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
// Failures are injected per endpoint with InjectFault (error statuses,
// Retry-After, delays, dropped connections, broken bodies, and answers lost
// after the call took effect), and Calls and CallsFor count the requests each
// endpoint received. SetLatency adds a round-trip time to every call.
//
// NewServer picks a free port; NewServerAt listens on a given address, which
// is what the standalone command piclient/pitest/cmd/fakepi uses.
//
// # Payment lifecycle
//
// A user-to-app payment is created (CreatePayment, as the Pi SDK does when the
// user starts it), approved by the app (developer_approved), paid by the
// user's wallet (SubmitTransaction: transaction set and verified), then
// completed by the app with that txid (developer_completed). The app may
// cancel it (cancelled) and the user may cancel it (UserCancel:
// user_cancelled) until it is completed.
//
// # Choices where the public docs are silent
//
// The Pi documentation does not say how the API behaves in every case. The
// fake makes these choices; correct them here if Pi is seen to differ.
//
//  1. Identifiers are 28 random characters from [A-Za-z0-9]; txids are 64
//     random lowercase hexadecimal digits; wallet addresses are random but
//     valid Stellar account ids (StrKey "G...", 56 characters, with checksum).
//     Each app (API key) has one wallet; each user uid keeps one address.
//  2. created_at is UTC in RFC 3339 with milliseconds, e.g.
//     "2024-05-04T10:20:30.123Z".
//  3. Server calls must carry exactly "Authorization: Key <key>" with a known
//     key; anything else is 401 {"error": "unauthorized"}. Authentication is
//     checked after latency and faults, as by a service behind a proxy.
//  4. A payment belongs to the app whose key created it. Another app's payment
//     is 404 {"error": "payment_not_found"}, exactly like an unknown id.
//     CreatePayment with an unregistered NewPayment.APIKey registers it as
//     AddApp does.
//  5. A user-to-app payment goes from the user's address to the app's wallet;
//     an app-to-user payment from the app's wallet to the user's address. An
//     app-to-user payment cannot be approved (400 "wrong_direction") and needs
//     no approval before its transaction is submitted or it is completed.
//  6. Approve checks, in order: wrong_direction, payment_cancelled (by the
//     developer or the user), already_approved. All are 400.
//  7. Complete checks, in order: already_completed (whatever the txid),
//     payment_cancelled, invalid_txid (body missing, not JSON, or txid not 64
//     hexadecimal digits), not_approved, no_transaction, txid_mismatch (txids
//     compared exactly, so case matters), transaction_not_verified. All are
//     400.
//  8. Cancel of a completed payment is 400 "already_completed". Any other
//     cancel sets status.cancelled and answers 200 with the DTO, also when the
//     payment is already cancelled by either side (idempotent) or already has
//     a transaction.
//  9. SubmitTransaction refuses a cancelled (by either side) or completed
//     payment, one that already has a transaction, and an unapproved
//     user-to-app payment. UserCancel refuses only a completed payment and may
//     be repeated.
//  10. Pi's verdict on the transaction (transaction.verified and
//     status.transaction_verified) is true unless Tx.Unverified: the Tx
//     overrides Amount, Memo, To and Failed change only what Horizon shows,
//     so that an on-chain cross-check has something to catch.
//  11. incomplete_server_payments lists the calling app's app-to-user payments
//     that are neither completed nor cancelled by either side, oldest first;
//     an empty list is [] (never null).
//  12. GET /me takes only "Authorization: Bearer <token>"; a missing, unknown
//     or expired token is 401 {"error": "unauthorized"}. A token from AddUser
//     is valid for TokenLifetime (one hour, to the second) and valid_until is
//     that instant; ExpireToken ends it early. Scopes are ["username",
//     "payments"], or ["payments"] and no username field when the username is
//     empty.
//  13. An unknown path is 404 {"error": "not_found"}; a known path with the
//     wrong method is 405 {"error": "method_not_allowed"} with an Allow
//     header. Neither is counted nor faulted.
//  14. Calls are counted when routed (before faults and authentication), per
//     endpoint and per payment id from the path (for Horizon, the payment of
//     the txid, or "" when the txid is unknown).
//  15. A Status fault answers that status with {"error": "<status text in
//     snake case>", "error_message": "pitest: injected fault"}, e.g.
//     "service_unavailable"; Horizon answers a problem+json body instead.
//  16. Malformed and Truncated keep the status of the real answer (200 when the
//     call succeeded, 4xx when Pi refused it); only the body is broken.
//     Malformed sends an HTML page, as a misbehaving proxy would.
//  17. When the client goes away during a Delay or latency (or the Server is
//     closed), the call is not performed and the connection is closed.
//  18. The faults of an endpoint form a queue tried in order on each call: a
//     Times fault applies and uses up one time; a Fraction fault applies with
//     that probability (ignoring Times, until ClearFaults) or lets the next
//     fault be tried; a fault with neither applies to every call and hides
//     the faults after it.
//  19. SetLatency applies to the API and Horizon, not to the control API.
//  20. Horizon needs no authentication; it prints amounts with exactly 7
//     decimals (rounding anything finer), memo_type "text", ledgers
//     increasing from 1000001, a fee of 100000, times to the second, and an
//     unknown txid (txids compared exactly) is 404 with a problem+json body.
//  21. The control API needs no authentication and allows any origin (CORS
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
//	GET    /control/payments                {"payments": [PaymentDTO]}, all apps, oldest first
//	POST   /control/payments                {amount, memo, metadata, user_uid, network, direction, api_key} → 201 PaymentDTO
//	GET    /control/payments/{id}           PaymentDTO
//	POST   /control/payments/{id}/submit    optional {amount, memo, to, failed, unverified} → PaymentDTO with its transaction
//	POST   /control/payments/{id}/user_cancel → PaymentDTO
//	POST   /control/faults                  {endpoint, status, retry_after_ms, delay_ms, drop, malformed, truncated, drop_response, times, fraction} → 201
//	DELETE /control/faults                  clears every fault → 204
//	GET    /control/calls                   {"get": n, "approve": n, ...}
//	DELETE /control/calls                   resets the counts → 204
//	POST   /control/users                   {uid, access_token, username} → 201 (as AddUser)
//	POST   /control/latency                 {latency_ms} (as SetLatency)
package pitest
