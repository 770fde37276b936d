package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Delivery states of a record.
const (
	// deliveryPending: Pi completed the payment and the app has not yet
	// answered a verified request for it with a 2xx.
	deliveryPending = "pending"
	// deliveryDelivered: the app answered a verified request with a 2xx.
	deliveryDelivered = "delivered"
	// deliveryExhausted: every redelivery attempt failed; an operator must act.
	deliveryExhausted = "exhausted"
)

// record is what the guard durably remembers of one payment: what Pi said,
// the request it forwards as verified, and whether the app has received it.
// Pi stays the source of truth; the record is what the guard did and owes.
type record struct {
	PaymentID string            `json:"payment_id"`
	Phase     string            `json:"phase"` // "complete": Pi completed the payment
	TxID      string            `json:"txid,omitempty"`
	Payment   *piclient.Payment `json:"payment"`
	Request   *storedRequest    `json:"request,omitempty"`
	Delivery  delivery          `json:"delivery"`
	Created   time.Time         `json:"created"`
	Updated   time.Time         `json:"updated"`
}

// storedRequest is the verified request as it was forwarded, so it can be
// sent again, byte for byte, with a fresh header.
type storedRequest struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
	Query  string      `json:"query,omitempty"`
	Host   string      `json:"host,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// delivery tracks the app's receipt of a completed payment.
type delivery struct {
	State       string    `json:"state,omitempty"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	DeliveredAt time.Time `json:"delivered_at,omitzero"`
}

// completed reports whether the guard saw Pi complete the payment with txid.
func (r *record) completed() bool {
	return r != nil && r.Phase == phaseComplete && r.Payment.IsCompletedWith(r.TxID)
}

// keptHeaders are the request headers stored for redelivery: those an app
// may need to interpret the body or the caller. Cookies and authorization
// are not kept: the verified header is the app's proof.
var keptHeaders = []string{"Content-Type", "Content-Encoding", "Accept", "User-Agent", "X-Request-Id", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}

func newStoredRequest(r *http.Request, body []byte) *storedRequest {
	sr := &storedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Header: http.Header{}, Body: body}
	for _, k := range keptHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			sr.Header[k] = append([]string(nil), v...)
		}
	}
	return sr
}

// store keeps records in Caddy storage, under prefix:
//
//	<prefix>/owed/<id>.json      the record while its delivery is pending or exhausted
//	<prefix>/payments/<id>.json  the record once the app accepted the payment
//	<prefix>/locks/<id>          cross-instance lock name
//
// A completion is one durable write (to owed/) before anything is
// forwarded; the worker lists owed/ to find what is due. Once the app has
// the payment, the record moves to payments/; with file_system storage that
// write is not synced (see save).
type store struct {
	s      certmagic.Storage
	prefix string
	// files replaces the storage's own lock for file_system storage (see
	// fileLocker); nil for other storage modules.
	files *fileLocker
	// w replaces the storage's Store for file_system storage (see
	// fileWriter); nil for other storage modules.
	w *fileWriter
}

func newStore(s certmagic.Storage, prefix string) *store {
	st := &store{s: s, prefix: prefix}
	if fs, ok := s.(*certmagic.FileStorage); ok {
		st.files = newFileLocker(fs.Path)
		st.w = newFileWriter(fs)
	}
	return st
}

func (st *store) recordKey(id string) string { return path.Join(st.prefix, "payments", id+".json") }
func (st *store) owedKey(id string) string   { return path.Join(st.prefix, "owed", id+".json") }
func (st *store) lockName(id string) string  { return path.Join(st.prefix, "locks", id) }

// load returns the payment's record, or nil when there is none. A settled
// record wins over an owed one (both exist only if a crash came between
// writing the first and deleting the second).
//
// With file_system storage a record that does not parse counts as missing:
// a settled record is written without a sync, so a crash can leave it empty
// or cut short (the owed one, if its removal was lost too, or Pi decides);
// a new owed record is created in place and synced before anything is
// forwarded on it, so one a crash cut short was never acted on (Pi decides
// again). Other storage modules write whole records: a broken one is an
// error.
func (st *store) load(ctx context.Context, id string) (*record, error) {
	for _, key := range []string{st.recordKey(id), st.owedKey(id)} {
		data, err := st.s.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("loading the record of payment %s: %w", id, err)
		}
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			if st.w != nil {
				continue // cut short by a crash before its write returned
			}
			return nil, fmt.Errorf("record of payment %s is corrupt: %w", id, err)
		}
		return &rec, nil
	}
	return nil, nil
}

// save writes rec where its delivery state puts it: an owed record (pending
// or exhausted) in one durable write to owed/; a delivered one to payments/,
// then its owed copy is removed.
//
// With file_system storage, owed records go through the group-commit writer
// (on disk, directory included, before save returns; concurrent saves share
// the syncs), and delivered ones are written without a sync: losing one to a
// crash costs at most an idempotent redelivery (the owed record is still
// there) or a fresh read from Pi (it is not), never a payment.
func (st *store) save(ctx context.Context, rec *record) error {
	now := time.Now().UTC()
	if rec.Created.IsZero() {
		rec.Created = now
	}
	rec.Updated = now
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rec.Delivery.State == deliveryPending || rec.Delivery.State == deliveryExhausted {
		if err := st.put(ctx, st.owedKey(rec.PaymentID), data, true); err != nil {
			return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
		}
		return nil
	}
	if err := st.put(ctx, st.recordKey(rec.PaymentID), data, false); err != nil {
		return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
	}
	if err := st.s.Delete(ctx, st.owedKey(rec.PaymentID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clearing the owed record of payment %s: %w", rec.PaymentID, err)
	}
	return nil
}

// put stores data under key: through the file writer for file_system
// storage (synced when durable), else through the storage module, whose
// Store is trusted to be durable.
func (st *store) put(ctx context.Context, key string, data []byte, durable bool) error {
	switch {
	case st.w == nil:
		return st.s.Store(ctx, key, data)
	case durable:
		return st.w.storeDurable(key, data)
	default:
		return st.w.storeLazy(key, data)
	}
}

// owed lists the ids of payments whose delivery is pending or exhausted.
func (st *store) owed(ctx context.Context) ([]string, error) {
	keys, err := st.s.List(ctx, path.Join(st.prefix, "owed"), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		base := path.Base(k)
		if id, ok := strings.CutSuffix(base, ".json"); ok && piclient.ValidatePaymentID(id) == nil {
			ids = append(ids, id)
		}
	}
	return ids, err
}

// lock takes the cross-instance lock of a payment. Storage locks are coarse
// and may mis-synchronise; the guard's correctness never rests on them alone
// (it re-reads Pi before acting and treats "already done" as success).
func (st *store) lock(ctx context.Context, id string) (func(), error) {
	name := st.lockName(id)
	if st.files != nil {
		unlock, err := st.files.lock(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("taking the lock of payment %s: %w", id, err)
		}
		return unlock, nil
	}
	if err := st.s.Lock(ctx, name); err != nil {
		return nil, fmt.Errorf("taking the storage lock of payment %s: %w", id, err)
	}
	return func() {
		// Unlock even if the request's context is already done.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.s.Unlock(ctx, name)
	}, nil
}

// tryLock takes the lock if it is free, without waiting, where the storage
// supports that; otherwise it waits at most wait.
func (st *store) tryLock(ctx context.Context, id string, wait time.Duration) (func(), bool) {
	name := st.lockName(id)
	if st.files != nil {
		unlock, err := st.files.tryLock(name)
		return unlock, err == nil && unlock != nil
	}
	if tl, ok := st.s.(certmagic.TryLocker); ok {
		got, err := tl.TryLock(ctx, name)
		if err != nil || !got {
			return nil, false
		}
		return func() { _ = st.s.Unlock(context.WithoutCancel(ctx), name) }, true
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	unlock, err := st.lock(wctx, id)
	return unlock, err == nil
}
