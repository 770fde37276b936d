package pitest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// env is one payment under test.
type env struct {
	s        *pitest.Server
	c        *piclient.Client
	id, txid string
}

// step moves the payment along before the call under test.
type step func(t *testing.T, e *env)

var (
	approve = func(t *testing.T, e *env) {
		_, err := e.c.Approve(t.Context(), e.id)
		require.NoError(t, err)
	}
	submit = func(t *testing.T, e *env) {
		txid, err := e.s.SubmitTransaction(e.id)
		require.NoError(t, err)
		e.txid = txid
	}
	submitUnverified = func(t *testing.T, e *env) {
		txid, err := e.s.SubmitTransactionWith(e.id, pitest.Tx{Unverified: true})
		require.NoError(t, err)
		e.txid = txid
	}
	complete = func(t *testing.T, e *env) {
		_, err := e.c.Complete(t.Context(), e.id, e.txid)
		require.NoError(t, err)
	}
	cancel = func(t *testing.T, e *env) {
		_, err := e.c.Cancel(t.Context(), e.id)
		require.NoError(t, err)
	}
	userCancel                = func(t *testing.T, e *env) { require.NoError(t, e.s.UserCancel(e.id)) }
	submitFailingVerification = func(t *testing.T, e *env) {
		txid, err := e.s.SubmitTransactionWith(e.id, pitest.Tx{VerificationError: "tx_memo_payment_identifier_mismatch"})
		require.NoError(t, err)
		e.txid = txid
	}
)

// call is the call under test; it returns the HTTP status and Pi's error
// code.
type call func(t *testing.T, e *env) (int, string)

func viaClient(f func(t *testing.T, e *env) (*piclient.Payment, error)) call {
	return func(t *testing.T, e *env) (int, string) {
		p, err := f(t, e)
		if err != nil {
			require.True(t, piclient.IsRejected(err), "want a rejection, got %v", err)
			return piclient.StatusCode(err), piclient.ErrorCode(err)
		}
		require.Equal(t, e.id, p.Identifier)
		return http.StatusOK, ""
	}
}

func viaRaw(method, suffix, body string) call {
	return func(t *testing.T, e *env) (int, string) {
		r := do(t, method, e.s.URL+"/payments/"+e.id+suffix, keyAuth(e.s), body)
		if r.status == http.StatusOK {
			return r.status, ""
		}
		code, _ := r.errorBody(t)
		return r.status, code
	}
}

var (
	callGet     = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) { return e.c.GetPayment(t.Context(), e.id) })
	callApprove = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) { return e.c.Approve(t.Context(), e.id) })
	callCancel  = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) { return e.c.Cancel(t.Context(), e.id) })
	// callComplete completes with the payment's txid, or with otherTxID when
	// it has none.
	callComplete = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) {
		txid := e.txid
		if txid == "" {
			txid = otherTxID
		}
		return e.c.Complete(t.Context(), e.id, txid)
	})
	callCompleteOther = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) {
		return e.c.Complete(t.Context(), e.id, otherTxID)
	})
	callCompleteUpper = viaClient(func(t *testing.T, e *env) (*piclient.Payment, error) {
		return e.c.Complete(t.Context(), e.id, strings.ToUpper(e.txid))
	})
	// callCompleteUpperRaw sends the txid in upper case, past the client,
	// which would send it in lower case.
	callCompleteUpperRaw = func(t *testing.T, e *env) (int, string) {
		return viaRaw("POST", "/complete", `{"txid":"`+strings.ToUpper(e.txid)+`"}`)(t, e)
	}
)

func TestStateMachine(t *testing.T) {
	t.Parallel()
	type flags = piclient.Status
	tests := []struct {
		name       string
		direction  string
		setup      []step
		call       call
		wantStatus int
		wantCode   string
		want       flags // status flags afterwards
		wantTx     bool  // the payment has a transaction afterwards
	}{
		{name: "get created", call: callGet, wantStatus: 200},
		{name: "get completed", setup: []step{approve, submit, complete}, call: callGet, wantStatus: 200,
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},

		{name: "approve created", call: callApprove, wantStatus: 200, want: flags{DeveloperApproved: true}},
		{name: "approve twice", setup: []step{approve}, call: callApprove, wantStatus: 400, wantCode: "already_approved",
			want: flags{DeveloperApproved: true}},
		{name: "approve after developer cancel", setup: []step{cancel}, call: callApprove, wantStatus: 400, wantCode: "cancelled_payment",
			want: flags{Cancelled: true}},
		{name: "approve after user cancel", setup: []step{userCancel}, call: callApprove, wantStatus: 400, wantCode: "cancelled_payment",
			want: flags{UserCancelled: true}},
		{name: "approve completed", setup: []step{approve, submit, complete}, call: callApprove, wantStatus: 400, wantCode: "already_approved",
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "approve app-to-user", direction: piclient.DirectionAppToUser, call: callApprove, wantStatus: 400, wantCode: "wrong_direction"},

		{name: "complete before approve", call: callComplete, wantStatus: 400, wantCode: "not_verified"},
		{name: "complete without transaction", setup: []step{approve}, call: callComplete, wantStatus: 400, wantCode: "not_verified",
			want: flags{DeveloperApproved: true}},
		{name: "complete paid", setup: []step{approve, submit}, call: callComplete, wantStatus: 200,
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete with another txid", setup: []step{approve, submit}, call: callCompleteOther, wantStatus: 400, wantCode: "txid_mismatch",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with upper-case txid", setup: []step{approve, submit}, call: callCompleteUpperRaw, wantStatus: 400, wantCode: "txid_mismatch",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with upper-case txid through the client", setup: []step{approve, submit}, call: callCompleteUpper, wantStatus: 200,
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete unverified transaction", setup: []step{approve, submitUnverified}, call: callComplete, wantStatus: 400, wantCode: "not_verified",
			want: flags{DeveloperApproved: true}, wantTx: true},
		{name: "complete transaction failing verification", setup: []step{approve, submitFailingVerification}, call: callComplete, wantStatus: 400, wantCode: "verification_failed",
			want: flags{DeveloperApproved: true}, wantTx: true},
		{name: "complete twice same txid", setup: []step{approve, submit, complete}, call: callComplete, wantStatus: 400, wantCode: "already_completed",
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete twice other txid", setup: []step{approve, submit, complete}, call: callCompleteOther, wantStatus: 400, wantCode: "already_completed",
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete completed with bad body", setup: []step{approve, submit, complete}, call: viaRaw("POST", "/complete", `nope`), wantStatus: 400, wantCode: "already_completed",
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete after developer cancel", setup: []step{approve, cancel}, call: callComplete, wantStatus: 400, wantCode: "cancelled_payment",
			want: flags{DeveloperApproved: true, Cancelled: true}},
		{name: "complete after user cancel", setup: []step{approve, submit, userCancel}, call: callComplete, wantStatus: 400, wantCode: "cancelled_payment",
			want: flags{DeveloperApproved: true, TransactionVerified: true, UserCancelled: true}, wantTx: true},
		{name: "complete app-to-user without approval", direction: piclient.DirectionAppToUser, setup: []step{submit}, call: callComplete, wantStatus: 200,
			want: flags{TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
		{name: "complete without body", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", ""), wantStatus: 400, wantCode: "missing_param",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with non-JSON body", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", `txid=abc`), wantStatus: 400, wantCode: "missing_param",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete without txid", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", `{"tx":"abc"}`), wantStatus: 400, wantCode: "missing_txid",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with empty txid", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", `{"txid":""}`), wantStatus: 400, wantCode: "missing_txid",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with short txid", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", `{"txid":"abc"}`), wantStatus: 400, wantCode: "txid_mismatch",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "complete with txid not a string", setup: []step{approve, submit}, call: viaRaw("POST", "/complete", `{"txid":12}`), wantStatus: 400, wantCode: "missing_txid",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},

		{name: "cancel created", call: callCancel, wantStatus: 200, want: flags{Cancelled: true}},
		{name: "cancel approved", setup: []step{approve}, call: callCancel, wantStatus: 200, want: flags{DeveloperApproved: true, Cancelled: true}},
		{name: "cancel twice", setup: []step{cancel}, call: callCancel, wantStatus: 400, wantCode: "cancelled_payment", want: flags{Cancelled: true}},
		{name: "cancel user-cancelled", setup: []step{userCancel}, call: callCancel, wantStatus: 400, wantCode: "cancelled_payment", want: flags{UserCancelled: true}},
		{name: "cancel paid", setup: []step{approve, submit}, call: callCancel, wantStatus: 400, wantCode: "payment_tx_present",
			want: flags{DeveloperApproved: true, TransactionVerified: true}, wantTx: true},
		{name: "cancel completed", setup: []step{approve, submit, complete}, call: callCancel, wantStatus: 400, wantCode: "already_completed",
			want: flags{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true}, wantTx: true},
	}
	s := newFake(t)
	c := newClient(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := s.CreatePayment(pitest.NewPayment{Direction: tt.direction})
			e := &env{s: s, c: c, id: p.Identifier}
			for _, st := range tt.setup {
				st(t, e)
			}
			status, code := tt.call(t, e)
			assert.Equal(t, tt.wantStatus, status)
			assert.Equal(t, tt.wantCode, code)
			got := mustPayment(t, s, e.id)
			assert.Equal(t, tt.want, got.Status)
			assert.Equal(t, tt.wantTx, got.Transaction != nil)
		})
	}
}

func TestUnknownPaymentIs404(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id := "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for name, f := range map[string]func() error{
		"get":      func() error { _, err := c.GetPayment(t.Context(), id); return err },
		"approve":  func() error { _, err := c.Approve(t.Context(), id); return err },
		"complete": func() error { _, err := c.Complete(t.Context(), id, otherTxID); return err },
		"cancel":   func() error { _, err := c.Cancel(t.Context(), id); return err },
	} {
		err := f()
		assert.True(t, piclient.IsNotFound(err), "%s: %v", name, err)
		assert.Equal(t, "payment_not_found", piclient.ErrorCode(err), name)
	}
}

func TestUserSide(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	tests := []struct {
		name  string
		dir   string
		setup []step
		act   func(s *pitest.Server, id string) error
		want  error
	}{
		{name: "submit before approval", act: submitOnly, want: pitest.ErrNotApproved},
		{name: "submit approved", setup: []step{approve}, act: submitOnly},
		{name: "submit app-to-user without approval", dir: piclient.DirectionAppToUser, act: submitOnly},
		{name: "submit twice", setup: []step{approve, submit}, act: submitOnly, want: pitest.ErrAlreadySubmitted},
		{name: "submit cancelled", setup: []step{approve, cancel}, act: submitOnly, want: pitest.ErrCancelled},
		{name: "submit user-cancelled", setup: []step{approve, userCancel}, act: submitOnly, want: pitest.ErrCancelled},
		{name: "submit completed", setup: []step{approve, submit, complete}, act: submitOnly, want: pitest.ErrCompleted},
		{name: "submit bad amount", setup: []step{approve}, act: func(s *pitest.Server, id string) error {
			_, err := s.SubmitTransactionWith(id, pitest.Tx{Amount: "one"})
			return err
		}, want: pitest.ErrInvalid},
		{name: "submit unknown", act: func(s *pitest.Server, _ string) error { return submitOnly(s, "nope") }, want: pitest.ErrPaymentNotFound},
		{name: "user cancel created", act: userCancelOnly},
		{name: "user cancel twice", setup: []step{userCancel}, act: userCancelOnly},
		{name: "user cancel paid", setup: []step{approve, submit}, act: userCancelOnly},
		{name: "user cancel completed", setup: []step{approve, submit, complete}, act: userCancelOnly, want: pitest.ErrCompleted},
		{name: "user cancel unknown", act: func(s *pitest.Server, _ string) error { return s.UserCancel("nope") }, want: pitest.ErrPaymentNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &env{s: s, c: c, id: s.CreatePayment(pitest.NewPayment{Direction: tt.dir}).Identifier}
			for _, st := range tt.setup {
				st(t, e)
			}
			err := tt.act(s, e.id)
			if tt.want == nil {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, tt.want)
			}
		})
	}
}

func submitOnly(s *pitest.Server, id string) error     { _, err := s.SubmitTransaction(id); return err }
func userCancelOnly(s *pitest.Server, id string) error { return s.UserCancel(id) }

func TestCreatePaymentDefaults(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	before := time.Now().UTC().Add(-time.Second)
	p := s.CreatePayment(pitest.NewPayment{})
	assert.Regexp(t, reID, p.Identifier)
	assert.Equal(t, piclient.Amount("1"), p.Amount)
	assert.JSONEq(t, `{}`, string(p.Metadata))
	assert.Equal(t, pitest.DefaultUserUID, p.UserUID)
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, p.UserUID, "a UUID, as Pi's uids are")
	assert.Equal(t, piclient.NetworkTestnet, p.Network)
	assert.Equal(t, piclient.DirectionUserToApp, p.Direction)
	assert.Equal(t, s.Wallet, p.ToAddress)
	assert.Regexp(t, reAddress, p.FromAddress)
	assert.Regexp(t, reAddress, s.Wallet)
	assert.NotEqual(t, s.Wallet, p.FromAddress)
	assert.Nil(t, p.Transaction)
	assert.Equal(t, piclient.Status{}, p.Status)
	created, err := time.Parse(time.RFC3339, p.CreatedAt)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(p.CreatedAt, "Z"), p.CreatedAt)
	assert.False(t, created.Before(before))

	// The same user pays from the same address; identifiers differ.
	q := s.CreatePayment(pitest.NewPayment{})
	assert.Equal(t, p.FromAddress, q.FromAddress)
	assert.NotEqual(t, p.Identifier, q.Identifier)
}

func TestCreatePaymentFields(t *testing.T) {
	t.Parallel()
	s := newFake(t, pitest.Options{APIKey: "k", Wallet: "GWALLET", Network: piclient.NetworkMainnet})
	assert.Equal(t, "k", s.APIKey)
	p := s.CreatePayment(pitest.NewPayment{Amount: "3.1415926", Memo: "pie", Metadata: json.RawMessage(`{"order":7}`), UserUID: "u9"})
	assert.Equal(t, piclient.Amount("3.1415926"), p.Amount)
	assert.Equal(t, "pie", p.Memo)
	assert.JSONEq(t, `{"order":7}`, string(p.Metadata))
	assert.Equal(t, "u9", p.UserUID)
	assert.Equal(t, piclient.NetworkMainnet, p.Network)
	assert.Equal(t, "GWALLET", p.ToAddress)

	a2u := s.CreatePayment(pitest.NewPayment{Direction: piclient.DirectionAppToUser, UserUID: "u9", Network: piclient.NetworkTestnet})
	assert.Equal(t, "GWALLET", a2u.FromAddress)
	assert.Equal(t, p.FromAddress, a2u.ToAddress)
	assert.Equal(t, piclient.NetworkTestnet, a2u.Network)

	// The DTO is a copy.
	p.Metadata[0] = 'X'
	assert.JSONEq(t, `{"order":7}`, string(mustPayment(t, s, p.Identifier).Metadata))
}

func TestCreatePaymentPanicsOnBadInput(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for _, p := range []pitest.NewPayment{
		{Amount: "one"}, {Amount: "0"}, {Amount: "-1"}, {Amount: "1e"},
		{Metadata: json.RawMessage(`{`)},
		{Direction: "sideways"},
	} {
		assert.Panics(t, func() { s.CreatePayment(p) }, "%+v", p)
	}
}

func TestSubmitTransaction(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	id, txid := paidPayment(t, s, c)
	assert.Regexp(t, reTxID, txid)
	p, err := c.GetPayment(t.Context(), id)
	require.NoError(t, err)
	require.NotNil(t, p.Transaction)
	assert.Equal(t, piclient.Transaction{TxID: txid, Verified: true, Link: s.HorizonURL + "/transactions/" + txid}, *p.Transaction)
	assert.True(t, p.Status.TransactionVerified)

	q := approvedPayment(t, s, c)
	txid2, err := s.SubmitTransactionWith(q.Identifier, pitest.Tx{Unverified: true})
	require.NoError(t, err)
	got := mustPayment(t, s, q.Identifier)
	assert.False(t, got.Transaction.Verified)
	assert.False(t, got.Status.TransactionVerified)
	assert.Equal(t, txid2, got.TxID())
}

func TestRedundantCompletes(t *testing.T) {
	s := pitest.NewServer()
	defer s.Close()
	c, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey, MaxRetries: -1})
	require.NoError(t, err)
	p := s.CreatePayment(pitest.NewPayment{})
	_, err = c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	txid, err := s.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	_, err = c.Complete(t.Context(), p.Identifier, txid)
	require.NoError(t, err)
	require.Zero(t, s.RedundantCompletes(p.Identifier))
	_, err = c.Complete(t.Context(), p.Identifier, txid)
	require.Error(t, err)
	require.Equal(t, 1, s.RedundantCompletes(p.Identifier))
	require.Zero(t, s.RedundantCompletes("unknown"))
}
