package pitest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Errors returned by the Server's methods that play the user's side.
var (
	// ErrPaymentNotFound: no payment has this identifier.
	ErrPaymentNotFound = errors.New("pitest: payment not found")
	// ErrNotApproved: a user-to-app payment's transaction was submitted before
	// the developer approved it.
	ErrNotApproved = errors.New("pitest: payment not approved by the developer")
	// ErrCancelled: the payment was cancelled by the developer or the user.
	ErrCancelled = errors.New("pitest: payment cancelled")
	// ErrAlreadySubmitted: the payment already has a transaction.
	ErrAlreadySubmitted = errors.New("pitest: transaction already submitted")
	// ErrCompleted: the payment was completed by the developer.
	ErrCompleted = errors.New("pitest: payment already completed")
	// ErrInvalid: an argument is malformed (see the error's text).
	ErrInvalid = errors.New("pitest: invalid argument")
)

// NewPayment describes a payment for CreatePayment. Zero values select the
// defaults.
type NewPayment struct {
	// Amount as decimal text; default "1". It must be a positive number.
	Amount string
	// Memo shown to the user.
	Memo string
	// Metadata is the app's JSON metadata; default {}.
	Metadata json.RawMessage
	// UserUID is the user's app-specific identifier; default DefaultUserUID
	// (Pi's uids are UUIDs).
	UserUID string
	// Network; default the Server's Network.
	Network string
	// Direction; default piclient.DirectionUserToApp.
	Direction string
	// APIKey of the app that owns the payment; default the Server's APIKey.
	// An unknown key is registered as another app, as by AddApp.
	APIKey string
}

// Tx overrides what the blockchain shows for a submitted transaction, to fake
// a forged or mismatched transaction. Amount, Memo and To change only what
// the fake Horizon reports; Pi's own verdict is changed only by Unverified.
type Tx struct {
	// Amount sent on chain; default the payment's amount.
	Amount string
	// Memo of the transaction; default the payment's identifier.
	Memo string
	// To is the receiving address; default the payment's to_address.
	To string
	// Failed makes the transaction unsuccessful on chain.
	Failed bool
	// Unverified makes Pi report transaction.verified=false and
	// status.transaction_verified=false; /complete then answers not_verified.
	Unverified bool
	// VerificationError makes Pi's verification of the transaction fail for
	// this reason, such as "tx_memo_payment_identifier_mismatch": it reports
	// the transaction unverified, as Unverified does, and /complete answers
	// 400 {"error": "verification_failed", "verification_error": reason}.
	VerificationError string
}

// payment is the server's record of a payment.
type payment struct {
	dto piclient.Payment
	app string // owning app's API key
	seq int
	// redundantCompletes counts /complete calls on the payment after it was
	// already completed.
	redundantCompletes int
	// verificationError is Pi's reason for refusing the transaction (Tx).
	verificationError string
}

// chainTx is a transaction on the fake blockchain.
type chainTx struct {
	txid, paymentID string
	from, to, memo  string
	amount          piclient.Amount
	successful      bool
	ledger          int64
	createdAt       time.Time
}

// user is a Pi user known to GET /me.
type user struct {
	uid, username string
	validUntil    time.Time
}

// TokenLifetime is how long an access token added by AddUser stays valid.
const TokenLifetime = time.Hour

// CreatePayment creates a payment as the Pi SDK does when a user starts one
// in the app, and returns its DTO. It panics if p is invalid: an amount that
// is not a positive decimal number, metadata that is not JSON, or an unknown
// direction.
func (s *Server) CreatePayment(p NewPayment) piclient.Payment {
	dto, err := s.createPayment(p)
	if err != nil {
		panic(err.Error())
	}
	return dto
}

func (s *Server) createPayment(p NewPayment) (piclient.Payment, error) {
	if p.Amount == "" {
		p.Amount = "1"
	}
	amount, err := positiveAmount(p.Amount)
	if err != nil {
		return piclient.Payment{}, err
	}
	if len(p.Metadata) == 0 {
		p.Metadata = json.RawMessage(`{}`)
	}
	if !json.Valid(p.Metadata) {
		return piclient.Payment{}, fmt.Errorf("%w: metadata is not JSON", ErrInvalid)
	}
	if p.UserUID == "" {
		p.UserUID = DefaultUserUID
	}
	if p.Network == "" {
		p.Network = s.Network
	}
	if p.Direction == "" {
		p.Direction = piclient.DirectionUserToApp
	}
	if p.Direction != piclient.DirectionUserToApp && p.Direction != piclient.DirectionAppToUser {
		return piclient.Payment{}, fmt.Errorf("%w: direction %q is neither %s nor %s", ErrInvalid, p.Direction, piclient.DirectionUserToApp, piclient.DirectionAppToUser)
	}
	if p.APIKey == "" {
		p.APIKey = s.APIKey
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	wallet := s.addAppLocked(p.APIKey)
	userAddr, ok := s.addrs[p.UserUID]
	if !ok {
		userAddr = randomAddress()
		s.addrs[p.UserUID] = userAddr
	}
	from, to := userAddr, wallet
	if p.Direction == piclient.DirectionAppToUser {
		from, to = wallet, userAddr
	}
	id := randomID()
	for s.payments[id] != nil {
		id = randomID()
	}
	s.seq++
	rec := &payment{app: p.APIKey, seq: s.seq, dto: piclient.Payment{
		Identifier:  id,
		UserUID:     p.UserUID,
		Amount:      amount,
		Memo:        p.Memo,
		Metadata:    bytes.Clone(p.Metadata),
		FromAddress: from,
		ToAddress:   to,
		Direction:   p.Direction,
		CreatedAt:   time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		Network:     p.Network,
	}}
	s.payments[id] = rec
	return snapshot(rec), nil
}

// positiveAmount parses a decimal amount and requires it to be above zero.
func positiveAmount(s string) (piclient.Amount, error) {
	a, err := piclient.ParseAmount(s)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if r := a.Rat(); r == nil || r.Sign() <= 0 {
		return "", fmt.Errorf("%w: amount %s is not positive", ErrInvalid, s)
	}
	return a, nil
}

// SubmitTransaction plays the user's wallet submitting the payment's
// transaction to the blockchain, which Pi then verifies. A user-to-app
// payment must be approved first; a cancelled or completed payment, or one
// that already has a transaction, is refused. It returns the txid.
func (s *Server) SubmitTransaction(id string) (txid string, err error) {
	return s.SubmitTransactionWith(id, Tx{})
}

// SubmitTransactionWith is SubmitTransaction with the on-chain transaction
// changed by tx.
func (s *Server) SubmitTransactionWith(id string, tx Tx) (string, error) {
	var amount piclient.Amount
	if tx.Amount != "" {
		a, err := piclient.ParseAmount(tx.Amount)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		amount = a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.payments[id]
	switch {
	case rec == nil:
		return "", ErrPaymentNotFound
	case rec.dto.Status.DeveloperCompleted:
		return "", ErrCompleted
	case rec.dto.IsCancelled():
		return "", ErrCancelled
	case rec.dto.Transaction != nil:
		return "", ErrAlreadySubmitted
	case rec.dto.Direction == piclient.DirectionUserToApp && !rec.dto.Status.DeveloperApproved:
		return "", ErrNotApproved
	}
	txid := randomTxID()
	for s.txs[txid] != nil {
		txid = randomTxID()
	}
	ct := &chainTx{
		txid: txid, paymentID: id,
		from: rec.dto.FromAddress, to: rec.dto.ToAddress, memo: id,
		amount: rec.dto.Amount, successful: !tx.Failed,
		createdAt: time.Now().UTC(),
	}
	if amount != "" {
		ct.amount = amount
	}
	if tx.Memo != "" {
		ct.memo = tx.Memo
	}
	if tx.To != "" {
		ct.to = tx.To
	}
	s.ledger++
	ct.ledger = s.ledger
	s.txs[txid] = ct
	verified := !tx.Unverified && tx.VerificationError == ""
	rec.verificationError = tx.VerificationError
	rec.dto.Transaction = &piclient.Transaction{TxID: txid, Verified: verified, Link: s.HorizonURL + "/transactions/" + txid}
	rec.dto.Status.TransactionVerified = verified
	return txid, nil
}

// UserCancel plays the user cancelling the payment in their wallet: it sets
// status.user_cancelled. A completed payment cannot be cancelled
// (ErrCompleted); cancelling again is not an error.
func (s *Server) UserCancel(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.payments[id]
	switch {
	case rec == nil:
		return ErrPaymentNotFound
	case rec.dto.Status.DeveloperCompleted:
		return ErrCompleted
	}
	rec.dto.Status.UserCancelled = true
	return nil
}

// Payment returns a copy of the payment as Pi holds it, whichever app owns
// it.
func (s *Server) Payment(id string) (piclient.Payment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.payments[id]
	if rec == nil {
		return piclient.Payment{}, false
	}
	return snapshot(rec), true
}

// RedundantCompletes returns how many /complete calls the payment received
// after it was already completed: a client that never completes a payment
// twice keeps it at 0.
func (s *Server) RedundantCompletes(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec, ok := s.payments[id]; ok {
		return rec.redundantCompletes
	}
	return 0
}

// AddApp registers another app's server API key. Each app sees only its own
// payments: another app's payment is 404 payment_not_found.
func (s *Server) AddApp(apiKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addAppLocked(apiKey)
}

// addAppLocked registers apiKey if needed and returns its wallet address.
func (s *Server) addAppLocked(apiKey string) string {
	w, ok := s.apps[apiKey]
	if !ok {
		w = randomAddress()
		s.apps[apiKey] = w
	}
	return w
}

// AddUser makes accessToken a valid access token of the user uid for GET
// /me, for TokenLifetime from now. An empty username means the user did not
// grant the username scope.
func (s *Server) AddUser(uid, accessToken, username string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[accessToken] = &user{uid: uid, username: username, validUntil: time.Now().Add(TokenLifetime).Truncate(time.Second)}
}

// ExpireToken makes an access token added by AddUser expired: GET /me with it
// answers 401.
func (s *Server) ExpireToken(accessToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[accessToken]; u != nil {
		u.validUntil = time.Now().Add(-time.Second)
	}
}

// rejection is a refusal by the API: status, Pi error code and message, and
// what some refusals carry beside them.
type rejection struct {
	status  int
	code    string
	message string
	// verificationError goes with code verification_failed, instead of a
	// message.
	verificationError string
	// payment is sent beside the code when set.
	payment *piclient.Payment
}

func reject(status int, code, msg string) *rejection {
	return &rejection{status: status, code: code, message: msg}
}

// withPayment returns rej with the payment beside it.
func (rej *rejection) withPayment(rec *payment) *rejection {
	p := snapshot(rec)
	rej.payment = &p
	return rej
}

// msgTxPresent is Pi's message for payment_tx_present, as quoted in
// pi-apps/pi-ruby#4.
const msgTxPresent = "You cannot cancel this payment, because an associated blockchain transaction has been recorded."

var errNotFound = reject(http.StatusNotFound, "payment_not_found", "payment not found")

// lookupLocked finds a payment of app.
func (s *Server) lookupLocked(app, id string) (*payment, *rejection) {
	rec := s.payments[id]
	if rec == nil || rec.app != app {
		return nil, errNotFound
	}
	return rec, nil
}

// get is GET /payments/{id}.
func (s *Server) get(app, id string) (piclient.Payment, *rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, rej := s.lookupLocked(app, id)
	if rej != nil {
		return piclient.Payment{}, rej
	}
	return snapshot(rec), nil
}

// approve is POST /payments/{id}/approve.
func (s *Server) approve(app, id string) (piclient.Payment, *rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, rej := s.lookupLocked(app, id)
	if rej != nil {
		return piclient.Payment{}, rej
	}
	st := &rec.dto.Status
	switch {
	case rec.dto.Direction != piclient.DirectionUserToApp:
		return piclient.Payment{}, reject(http.StatusBadRequest, "wrong_direction", "only user-to-app payments are approved")
	case rec.dto.IsCancelled():
		return piclient.Payment{}, reject(http.StatusBadRequest, "cancelled_payment", "the payment was cancelled")
	case st.DeveloperApproved:
		return piclient.Payment{}, reject(http.StatusBadRequest, "already_approved", "the payment is already approved")
	}
	st.DeveloperApproved = true
	return snapshot(rec), nil
}

// complete is POST /payments/{id}/complete with the txid from the body, or
// bad, the refusal of a body without one.
func (s *Server) complete(app, id, txid string, bad *rejection) (piclient.Payment, *rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, rej := s.lookupLocked(app, id)
	if rej != nil {
		return piclient.Payment{}, rej
	}
	st := &rec.dto.Status
	tx := rec.dto.Transaction
	switch {
	case st.DeveloperCompleted:
		rec.redundantCompletes++
		return piclient.Payment{}, reject(http.StatusBadRequest, "already_completed", "the payment is already completed")
	case rec.dto.IsCancelled():
		return piclient.Payment{}, reject(http.StatusBadRequest, "cancelled_payment", "the payment was cancelled")
	case bad != nil:
		return piclient.Payment{}, bad
	case tx == nil:
		return piclient.Payment{}, reject(http.StatusBadRequest, "not_verified", "no verified blockchain transaction is linked to the payment")
	case tx.TxID != txid:
		return piclient.Payment{}, reject(http.StatusBadRequest, "txid_mismatch", "the txid is not the payment's transaction")
	case rec.verificationError != "":
		return piclient.Payment{}, &rejection{status: http.StatusBadRequest, code: "verification_failed", verificationError: rec.verificationError}
	case !tx.Verified:
		return piclient.Payment{}, reject(http.StatusBadRequest, "not_verified", "the transaction is not verified")
	}
	st.DeveloperCompleted = true
	return snapshot(rec), nil
}

// cancel is POST /payments/{id}/cancel. Pi refuses to cancel a completed or
// cancelled payment (with the payment beside the code) and one with a
// transaction.
func (s *Server) cancel(app, id string) (piclient.Payment, *rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, rej := s.lookupLocked(app, id)
	if rej != nil {
		return piclient.Payment{}, rej
	}
	switch {
	case rec.dto.Status.DeveloperCompleted:
		return piclient.Payment{}, reject(http.StatusBadRequest, "already_completed", "a completed payment cannot be cancelled").withPayment(rec)
	case rec.dto.IsCancelled():
		return piclient.Payment{}, reject(http.StatusBadRequest, "cancelled_payment", "the payment is already cancelled").withPayment(rec)
	case rec.dto.Transaction != nil:
		return piclient.Payment{}, reject(http.StatusBadRequest, "payment_tx_present", msgTxPresent)
	}
	rec.dto.Status.Cancelled = true
	return snapshot(rec), nil
}

// incomplete is GET /payments/incomplete_server_payments: the app's
// app-to-user payments neither completed nor cancelled, oldest first.
func (s *Server) incomplete(app string) []piclient.Payment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked(func(rec *payment) bool {
		return rec.app == app && rec.dto.Direction == piclient.DirectionAppToUser &&
			!rec.dto.Status.DeveloperCompleted && !rec.dto.IsCancelled()
	})
}

// listLocked returns copies of the payments keep accepts, oldest first.
func (s *Server) listLocked(keep func(*payment) bool) []piclient.Payment {
	var recs []*payment
	for _, rec := range s.payments {
		if keep(rec) {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(a, b *payment) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]piclient.Payment, 0, len(recs))
	for _, rec := range recs {
		out = append(out, snapshot(rec))
	}
	return out
}

// me looks up an access token for GET /me.
func (s *Server) me(token string) (piclient.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[token]
	if u == nil || !time.Now().Before(u.validUntil) {
		return piclient.User{}, false
	}
	scopes := []string{"payments"}
	if u.username != "" {
		scopes = []string{"username", "payments"}
	}
	return piclient.User{
		UID:      u.uid,
		Username: u.username,
		Credentials: piclient.Credentials{
			Scopes: scopes,
			ValidUntil: piclient.ValidUntil{
				Timestamp: u.validUntil.Unix(),
				ISO8601:   u.validUntil.UTC().Format(time.RFC3339),
			},
		},
	}, true
}

// snapshot copies a payment's DTO so that callers never share its memory.
func snapshot(rec *payment) piclient.Payment {
	p := rec.dto
	p.Metadata = bytes.Clone(rec.dto.Metadata)
	if rec.dto.Transaction != nil {
		t := *rec.dto.Transaction
		p.Transaction = &t
	}
	return p
}
