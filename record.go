package piguard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
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
	// Payer holds the digests of the approver's credentials (see
	// PayerBinding): the app's answer to a completion, first delivery or
	// replay, goes only to a request that carries one of them.
	Payer []string `json:"payer,omitempty"`
	// PayerBefore is the approver's credential before the app's answer to
	// the approve set new cookies (see approver.Before); either counts.
	PayerBefore []string `json:"payer_before,omitempty"`
	// Caller, in records written before Payer, is a hash of the completing
	// request's Cookie and Authorization headers. Never written now.
	Caller string `json:"caller,omitempty"`
	// CompletedAt is when the guard saw Pi complete the payment (zero in
	// records written before it was kept: Created is then the closest).
	CompletedAt time.Time `json:"completed_at,omitzero"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`

	// unsaved: the last save failed; the record lives in memory only (see
	// unsavedRecords) until a later save succeeds.
	unsaved bool
}

// storedRequest is the verified request as it was forwarded, so it can be
// sent again, byte for byte, with a fresh header. Verified requests are
// forwarded without a query string (the token binds method, path and body
// only), so none is stored.
type storedRequest struct {
	Method string      `json:"method"`
	Path   string      `json:"path"`
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

// markCompleted records that Pi completed the payment with p's transaction,
// now unless an earlier completion was recorded.
func (rec *record) markCompleted(p *piclient.Payment, txid string) {
	rec.Phase, rec.TxID, rec.Payment = phaseComplete, txid, p
	if rec.CompletedAt.IsZero() {
		rec.CompletedAt = time.Now().UTC()
	}
}

// completedAt is when the guard saw Pi complete the payment.
func (rec *record) completedAt() time.Time {
	if rec.CompletedAt.IsZero() {
		return rec.Created
	}
	return rec.CompletedAt
}

// keptHeaders are the request headers stored for redelivery and replays:
// those an app may need to interpret the body. Cookies and authorization are
// not kept (the verified header is the app's proof), nor X-Forwarded-*: on
// the live path reverse_proxy sets those from the connection, and a stored
// copy would only repeat what a client claimed.
var keptHeaders = []string{"Content-Type", "Content-Encoding", "Accept", "User-Agent", "X-Request-Id"}

func newStoredRequest(r *http.Request, body []byte) *storedRequest {
	sr := &storedRequest{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: http.Header{}, Body: body}
	for _, k := range keptHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			sr.Header[k] = append([]string(nil), v...)
		}
	}
	return sr
}

// keptHeader returns the stored headers that may be sent again: only
// keptHeaders, whatever an older record holds.
func (sr *storedRequest) keptHeader() http.Header {
	out := http.Header{}
	for _, k := range keptHeaders {
		if v := sr.Header.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// canonicalCompletion is the completion the guard records and delivers when
// the payer did not post it (a stranger did, or the reconciler completed the
// payment): the reference frontend's completion body, {"paymentId", "txid"},
// on the complete route, as JSON or, when the payer's approve was a form,
// as a form; sent to the host the payer's approve was sent to.
func canonicalCompletion(completePath, id, txid string, who *approver) *storedRequest {
	sr := &storedRequest{Method: http.MethodPost, Path: completePath, Header: http.Header{}}
	if who != nil {
		sr.Host = who.Host
	}
	if who != nil && who.Form {
		sr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		sr.Body = []byte(url.Values{"paymentId": {id}, "txid": {txid}}.Encode())
		return sr
	}
	sr.Header.Set("Content-Type", "application/json")
	sr.Body, _ = json.Marshal(map[string]string{"paymentId": id, "txid": txid})
	return sr
}

// request is the request to deliver for rec: the stored one, or, for a
// record written without one, the reference frontend's completion body on
// the complete route.
func (rec *record) request(completePath string) *storedRequest {
	if rec.Request != nil {
		return rec.Request
	}
	body, _ := json.Marshal(map[string]string{"paymentId": rec.PaymentID, "txid": rec.TxID})
	return &storedRequest{Method: http.MethodPost, Path: completePath,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
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
// write is not synced (see save). A record whose write failed
// (disk full, read-only storage) is kept in memory instead, where load and
// owed find it, until a later save succeeds (see unsavedRecords).
type store struct {
	s      certmagic.Storage
	prefix string
	// files replaces the storage's own lock for file_system storage (see
	// pathLocker); nil for other storage modules.
	files pathLocker
	// unsaved holds the records this process could not write; shared by
	// every store of the process over the same storage and prefix, so a
	// config reload keeps them.
	unsaved *unsavedRecords
	// w replaces the storage's Store for file_system storage (see
	// fileWriter); nil for other storage modules, and for a file_system
	// storage wrapped by another module, whose Store is used as it is.
	w *fileWriter
	// expiry lists delivered records for the retention sweep, with w;
	// else nil. expirySpan is the span of the files this store starts
	// (see expirySpan): its handler's, set at provisioning, so that a
	// config that never loads changes nothing in the shared log.
	expiry     *expiryLog
	expirySpan time.Duration
	// journalOffLogged: the redelivery worker logged that the journal
	// failed (once per store, so once per config load).
	journalOffLogged atomic.Bool
}

func newStore(s certmagic.Storage, prefix string) *store {
	st := &store{s: s, prefix: prefix, unsaved: unsavedFor(s, prefix)}
	fs, ok := s.(*certmagic.FileStorage)
	if ok {
		st.w = newFileWriter(fs)
		st.w.journal = journalFor(fs.Filename(path.Join(prefix, "journal")))
		st.expiry = expiryLogFor(fs.Filename(st.expiryDir()))
		st.expirySpan = expirySpan(DefaultRetention)
	}
	if w, wraps := s.(interface{ Unwrap() certmagic.Storage }); !ok && wraps {
		fs, ok = w.Unwrap().(*certmagic.FileStorage)
	}
	if ok {
		st.files = newFileLocker(fs.Path)
	}
	return st
}

func (st *store) recordKey(id string) string { return path.Join(st.prefix, "payments", id+".json") }
func (st *store) owedKey(id string) string   { return path.Join(st.prefix, "owed", id+".json") }
func (st *store) lockName(id string) string  { return path.Join(st.prefix, "locks", id) }
func (st *store) expiryDir() string          { return path.Join(st.prefix, "expiry") }

// load returns the payment's record, or nil when there is none. A record
// kept in memory is newer than any written one; of the written ones, a
// settled record wins over an owed one (both exist only if a crash came
// between writing the first and deleting the second).
//
// With file_system storage a written record that does not parse counts as
// missing: a settled record is written without a sync, so a crash can leave
// it empty or cut short (the owed one, if its removal was lost too, or Pi
// decides); a new owed record is created in place and synced before
// anything is forwarded on it, so one a crash cut short was never acted on
// (Pi decides again). Other storage modules write whole records: a broken
// one is an error.
func (st *store) load(ctx context.Context, id string) (*record, error) {
	if data, ok := st.unsaved.get(id); ok {
		var rec record
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("record of payment %s is corrupt: %w", id, err)
		}
		rec.unsaved = true
		return &rec, nil
	}
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
// or exhausted) in one write to owed/; a delivered one to payments/, then
// its owed copy is removed. When the write fails, the record is kept in
// memory (rec.unsaved), still listed, loaded and redelivered, and the error
// says so; the redelivery worker tries to write it again on every pass.
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
	if err := st.write(ctx, rec, data); err != nil {
		st.unsaved.keep(rec.PaymentID, data, rec.owed())
		rec.unsaved = true
		return fmt.Errorf("%w (kept in memory until storage accepts it)", err)
	}
	st.unsaved.drop(rec.PaymentID)
	rec.unsaved = false
	return nil
}

// write stores an owed record durably (with file_system storage through the
// group-commit writer: on disk, directory included, before write returns;
// concurrent writes share the syncs) and a delivered one without a sync:
// losing that to a crash costs at most an idempotent redelivery (the owed
// record is still there) or a fresh read from Pi (it is not), never a
// payment.
func (st *store) write(ctx context.Context, rec *record, data []byte) error {
	if rec.owed() {
		if err := st.put(ctx, st.owedKey(rec.PaymentID), data, true); err != nil {
			return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
		}
		return nil
	}
	if err := st.put(ctx, st.recordKey(rec.PaymentID), data, false); err != nil {
		return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
	}
	if err := st.clearOwed(ctx, rec.PaymentID); err != nil {
		return err
	}
	if st.expiry != nil {
		// Best effort: the retention sweep's walk finds what the log misses.
		_ = st.expiry.add(rec.PaymentID, st.expirySpan)
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
		return st.w.storeDurable(ctx, key, data)
	default:
		return st.w.storeLazy(key, data)
	}
}

// clearOwed deletes the owed copy of a payment whose settled record is
// written.
func (st *store) clearOwed(ctx context.Context, id string) error {
	if err := st.s.Delete(ctx, st.owedKey(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clearing the owed record of payment %s: %w", id, err)
	}
	return nil
}

// owed reports whether the record's delivery is pending or exhausted.
func (rec *record) owed() bool {
	return rec.Delivery.State == deliveryPending || rec.Delivery.State == deliveryExhausted
}

// owed lists the ids of payments whose delivery is pending or exhausted,
// written or kept in memory. On a listing error it still returns the ones
// in memory.
func (st *store) owed(ctx context.Context) ([]string, error) {
	dir := path.Join(st.prefix, "owed")
	var keys []string
	var err error
	for try := 0; try < 3; try++ {
		keys, err = st.s.List(ctx, dir, false)
		if errors.Is(err, fs.ErrNotExist) && !st.s.Exists(ctx, dir) {
			keys, err = nil, nil // nothing was ever owed
		}
		// file_system storage also answers "not exist" when an entry is
		// deleted while the directory is read: that is not "nothing owed",
		// so list again, and fail rather than report an empty list.
		if err == nil {
			break
		}
	}
	mem := st.unsaved.states()
	ids := make([]string, 0, len(keys)+len(mem))
	for _, k := range keys {
		base := path.Base(k)
		if id, ok := strings.CutSuffix(base, ".json"); ok && piclient.ValidatePaymentID(id) == nil {
			if _, inMemory := mem[id]; !inMemory {
				ids = append(ids, id)
			}
		}
	}
	for id, owed := range mem {
		if owed {
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
	return st.storageLockWithin(ctx, name, wait)
}

// storageLockWithin takes the storage lock name, waiting at most wait. The
// lock lives on a context derived from ctx that ends only at unlock (a
// storage module may keep its lock fresh only while that context lives):
// the wait is bounded by ending that context only while the lock is not
// held yet.
func (st *store) storageLockWithin(ctx context.Context, name string, wait time.Duration) (func(), bool) {
	lctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(wait, cancel)
	err := st.s.Lock(lctx, name)
	fired := !timer.Stop()
	unlock := func() {
		// Unlock even if ctx is already done.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ucancel()
		_ = st.s.Unlock(uctx, name)
		cancel()
	}
	switch {
	case err == nil && !fired:
		return unlock, true
	case err == nil: // taken as the wait ran out: its context is ending
		unlock()
	}
	cancel()
	return nil, false
}

// unsavedRecords holds, in this process, records whose last write to
// storage failed, as JSON, newest first in every lookup. They are not
// durable: a crash loses them (Pi still has the payment completed).
type unsavedRecords struct {
	mu sync.Mutex
	m  map[string]unsavedRecord
}

type unsavedRecord struct {
	data []byte
	owed bool // pending or exhausted
}

// unsavedByStore maps a storage and prefix to its unsavedRecords.
var unsavedByStore sync.Map // string → *unsavedRecords

// unsavedFor returns the process's unsaved records for s and prefix. A
// storage that names itself (FileStorage names its path) is recognised
// across config reloads.
func unsavedFor(s certmagic.Storage, prefix string) *unsavedRecords {
	key := fmt.Sprintf("%T %p %s", s, s, prefix)
	if named, ok := s.(fmt.Stringer); ok {
		key = fmt.Sprintf("%T %s %s", s, named.String(), prefix)
	}
	u, _ := unsavedByStore.LoadOrStore(key, &unsavedRecords{m: map[string]unsavedRecord{}})
	return u.(*unsavedRecords)
}

func (u *unsavedRecords) keep(id string, data []byte, owed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.m[id] = unsavedRecord{data: data, owed: owed}
}

func (u *unsavedRecords) drop(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, id)
}

func (u *unsavedRecords) get(id string) ([]byte, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.m[id]
	return r.data, ok
}

// states maps each unsaved id to whether its delivery is owed.
func (u *unsavedRecords) states() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]bool, len(u.m))
	for id, r := range u.m {
		out[id] = r.owed
	}
	return out
}
