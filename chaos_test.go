package piguard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// chaosApp is the upstream app in the fault suite: it verifies every header
// and can be told to fail or to be unreachable.
type chaosApp struct {
	srv      *httptest.Server
	verifier *verify.Verifier
	appFaults
	hang     sync.Map // payment id → chan struct{}: verified requests wait until it closes
	refuse   sync.Map // payment id → status: verified requests answered with it
	mu       sync.Mutex
	accepted map[string]int    // payment id → verified requests answered 2xx
	txids    map[string]string // payment id → txid in the verified claims
	forged   int               // verified headers that failed verification
}

// unitVerifier verifies the headers that handlers built by the tests sign
// with unitSigningKey.
func unitVerifier(t testing.TB) *verify.Verifier {
	t.Helper()
	key, err := verify.HS256Key("", []byte(unitSigningKey))
	require.NoError(t, err)
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}})
	require.NoError(t, err)
	return v
}

// appFaults are the failures an upstream app of the fault suites can be
// told to show.
type appFaults struct {
	failRate atomic.Uint64 // percent of requests answered 503
	down     atomic.Bool   // hang up without answering
}

// failed answers the request as the faults say, and reports whether it did.
func (f *appFaults) failed(w http.ResponseWriter) bool {
	if f.down.Load() {
		hangUp(w)
		return true
	}
	if rand.N(uint64(100)) < f.failRate.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	return false
}

func newChaosApp(t testing.TB) *chaosApp {
	a := &chaosApp{verifier: unitVerifier(t), accepted: map[string]int{}, txids: map[string]string{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *chaosApp) serve(w http.ResponseWriter, r *http.Request) {
	if a.failed(w) {
		return
	}
	if r.Header.Get(verify.HeaderVerified) == "" {
		w.WriteHeader(http.StatusOK) // notices and other routes
		return
	}
	claims, err := a.verifier.Verify(r)
	if err == nil {
		if ch, ok := a.hang.Load(claims.Subject); ok {
			select {
			case <-ch.(chan struct{}):
			case <-r.Context().Done():
				return
			}
		}
		if status, ok := a.refuse.Load(claims.Subject); ok {
			w.WriteHeader(status.(int))
			return
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.forged++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	a.accepted[claims.Subject]++
	a.txids[claims.Subject] = claims.Payment.TxID()
	w.WriteHeader(http.StatusOK)
}

func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// proxyTo is the `next` handler in the fault suite: a minimal reverse proxy
// that, like reverse_proxy, returns an error when the upstream is unreachable.
func proxyTo(base string) caddyhttp.Handler {
	client := &http.Client{Timeout: 2 * time.Second}
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := client.Do(req)
		if err != nil {
			return caddyhttp.Error(http.StatusBadGateway, err)
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, err = io.Copy(w, resp.Body)
		return err
	})
}

// chaosInstance is one "Caddy instance": a provisioned handler with its own
// in-process locks and redelivery worker, over the shared storage.
type chaosInstance struct {
	h      *Handler
	cancel func() // stops the worker and waits for its deliveries
}

// stop stops the instance once no request runs on it any more, and waits
// for its background writes.
func (in *chaosInstance) stop() {
	in.cancel()
	in.h.background.Wait()
}

func startInstance(t testing.TB, piURL, appURL string, storage certmagic.Storage, tweaks ...func(*Handler)) *chaosInstance {
	h := &Handler{
		APIKey: pitest.DefaultAPIKey, APIURL: piURL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey,
		Timeout: caddyDuration(2 * time.Second), RedeliverTo: appURL, RedeliverBackoff: caddyDuration(20 * time.Millisecond),
		RedeliverAttempts: 1000,
		// The suites play many users from one test address.
		LookupRate: 1e6, LookupRatePerClient: 1e6,
	}
	for _, tweak := range tweaks {
		tweak(h)
	}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(storage))
	require.NoError(t, h.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.redeliverLoop(ctx)
	}()
	return &chaosInstance{h: h, cancel: func() {
		cancel()
		<-done
	}}
}

// cluster is a set of instances that can be restarted while requests run.
type cluster struct {
	mu        sync.RWMutex
	instances []*chaosInstance
	restarts  atomic.Int64
	start     func() *chaosInstance
}

func (c *cluster) pick() *Handler {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.instances[rand.N(len(c.instances))].h
}

func (c *cluster) restart() {
	c.mu.Lock()
	i := rand.N(len(c.instances))
	old := c.instances[i]
	c.instances[i] = c.start()
	c.mu.Unlock()
	old.cancel()
	c.restarts.Add(1)
}

func (c *cluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, in := range c.instances {
		in.cancel()
	}
}

// call posts a callback body to h and returns the status and error code.
func call(h *Handler, next caddyhttp.Handler, path string, body map[string]string) (int, string) {
	raw, _ := json.Marshal(body)
	return callRaw(h, next, path, raw)
}

// callRaw posts raw to h and returns the status and error code.
func callRaw(h *Handler, next caddyhttp.Handler, path string, raw []byte) (int, string) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(verify.HeaderVerified, "forged-by-client")
	withPayer(req)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, req, next); err != nil {
		return http.StatusBadGateway, "handler_error"
	}
	var out struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out.Error
}

// TestFaultInjection runs randomized payment flows against the fake Pi with
// faults at every step, two instances over one storage and restarts, and
// checks the delivery invariants. CHAOS_PAYMENTS raises the number of flows.
func TestFaultInjection(t *testing.T) { forEachStorage(t, testFaultInjection) }

func testFaultInjection(t *testing.T, kind string) {
	payments := 120
	if n := os.Getenv("CHAOS_PAYMENTS"); n != "" {
		fmt.Sscan(n, &payments)
	}
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newChaosApp(t)
	base, srv := newSuiteStorage(t, kind)
	storage := newFaultyStorageOn(base)
	next := proxyTo(app.srv.URL)
	cl := &cluster{start: func() *chaosInstance { return startInstance(t, pi.URL, app.srv.URL, storage) }}
	cl.instances = []*chaosInstance{cl.start(), cl.start()}
	defer cl.stop()

	// Faults at every step: reads, approvals and completions fail, lose
	// their answers or arrive broken; the app fails or is down.
	pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503, Fraction: 0.08})
	pi.InjectFault(pitest.EndpointGet, pitest.Fault{Truncated: true, Fraction: 0.04})
	pi.InjectFault(pitest.EndpointApprove, pitest.Fault{Status: 502, Fraction: 0.08})
	pi.InjectFault(pitest.EndpointApprove, pitest.Fault{DropResponse: true, Fraction: 0.08})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Fraction: 0.12})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Malformed: true, Fraction: 0.08})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 500, Fraction: 0.08})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Delay: 3 * time.Second, Fraction: 0.02})
	app.failRate.Store(15)
	storage.failRate.Store(10) // a disk that fills up and empties again

	stopChaos := startChaos(cl, &app.down) // restarts and app outages while the flows run

	type flow struct {
		id, txid  string
		completed bool // the client got a 200 from complete
		// unknown counts the completions the guard answered without
		// knowing whether Pi completed the payment (a Pi error: the answer
		// to /complete and the re-read were both lost). After one, an
		// instance that remembers the approval posts /complete again (see
		// approvals): one redundant call per such answer at most.
		unknown atomic.Int32
	}
	flows := make([]*flow, payments)
	codes := map[string]int{}
	var codesMu sync.Mutex
	note := func(status int, code string) {
		codesMu.Lock()
		defer codesMu.Unlock()
		if status == http.StatusOK {
			code = "ok"
		}
		codes[fmt.Sprintf("%d %s", status, code)]++
	}

	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f := &flow{id: pi.CreatePayment(pitest.NewPayment{Amount: "1.5"}).Identifier}
			flows[i] = f
			for try := 0; try < 6; try++ {
				status, code := call(cl.pick(), next, DefaultApprovePath, map[string]string{"paymentId": f.id})
				note(status, code)
				// already_approved: an earlier try approved it, and this
				// instance does not know the approver yet (the SDK goes on:
				// Pi shows it approved).
				if status == http.StatusOK || code == "already_approved" {
					break
				}
			}
			txid, err := pi.SubmitTransaction(f.id)
			if err != nil {
				return // never approved: nothing to pay
			}
			f.txid = txid
			for try := 0; try < 6 && !f.completed; try++ {
				// Sometimes the frontend fires duplicates at once.
				dup := 1 + rand.N(3)
				var dwg sync.WaitGroup
				var ok atomic.Bool
				for range dup {
					dwg.Add(1)
					go func() {
						defer dwg.Done()
						status, code := call(cl.pick(), next, DefaultCompletePath, map[string]string{"paymentId": f.id, "txid": txid})
						note(status, code)
						if status == http.StatusOK {
							ok.Store(true)
						}
						if strings.HasPrefix(code, "pi_") {
							f.unknown.Add(1)
						}
					}()
				}
				dwg.Wait()
				f.completed = ok.Load()
			}
		}()
	}
	wg.Wait()
	stopChaos()

	// The weather clears: Pi and the app work again, and every user whose
	// completion never got through comes back once (onIncompletePaymentFound).
	pi.ClearFaults()
	app.down.Store(false)
	app.failRate.Store(0)
	storage.failRate.Store(0)
	for _, f := range flows {
		if f.txid != "" && !f.completed {
			status, code := call(cl.pick(), next, DefaultCompletePath, map[string]string{"paymentId": f.id, "txid": f.txid})
			note(status, code)
			f.completed = status == http.StatusOK
		}
	}
	// Owed deliveries drain through the redelivery workers, and every record
	// storage refused is written after all.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := cl.pick().store
		owed, err := st.Owed(context.Background())
		require.NoError(t, err)
		unsaved := st.Unsaved()
		if (len(owed) == 0 && len(unsaved) == 0) || time.Now().After(deadline) {
			for _, id := range owed {
				rec, err := st.Load(context.Background(), id)
				if err == nil && rec != nil {
					p, _ := pi.Payment(id)
					t.Logf("still owed: %s: phase %q completed %v unsaved %v delivery %+v; Pi: completed %v txid %s",
						id, rec.Phase, rec.Completed(), rec.Unsaved, rec.Delivery, p.Status.DeveloperCompleted, p.TxID())
				}
			}
			require.Empty(t, owed, "owed deliveries did not drain")
			require.Empty(t, unsaved, "records kept in memory were never written")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The invariants.
	var violations []string
	piCompleted, delivered := 0, 0
	app.mu.Lock()
	for _, f := range flows {
		p, _ := pi.Payment(f.id)
		done := p.Status.DeveloperCompleted
		if done {
			piCompleted++
		}
		if done && app.accepted[f.id] == 0 {
			violations = append(violations, f.id+": completed at Pi, never delivered to the app")
		}
		if app.accepted[f.id] > 0 {
			delivered++
			if !done || app.txids[f.id] != p.TxID() {
				violations = append(violations, f.id+": delivered as verified without Pi completion with its txid")
			}
		}
		if n := pi.RedundantCompletes(f.id); n > int(f.unknown.Load()) {
			violations = append(violations, fmt.Sprintf("%s: %d redundant Pi /complete calls after %d answers that did not know Pi's", f.id, n, f.unknown.Load()))
		}
	}
	forged := app.forged
	app.mu.Unlock()
	if forged > 0 {
		violations = append(violations, fmt.Sprintf("%d verified headers failed verification at the app", forged))
	}

	var rows []string
	for k, v := range codes {
		rows = append(rows, fmt.Sprintf("  %-32s %6d", k, v))
	}
	sort.Strings(rows)
	t.Logf("fault injection summary\n"+
		"  payments                         %6d\n"+
		"  completed at Pi                  %6d\n"+
		"  delivered to the app (verified)  %6d\n"+
		"  instance restarts                %6d\n"+
		"  storage writes refused           %6d\n"+
		"  Pi calls get/approve/complete    %d/%d/%d\n"+
		"  invariant violations             %6d\n"+
		"answers seen by clients:\n%s",
		payments, piCompleted, delivered, cl.restarts.Load(), storage.refused.Load(),
		pi.Calls(pitest.EndpointGet), pi.Calls(pitest.EndpointApprove), pi.Calls(pitest.EndpointComplete),
		len(violations), strings.Join(rows, "\n"))
	logStorageCounts(t, srv)
	assert.Empty(t, violations)
	assert.Greater(t, piCompleted, payments/2, "the suite must exercise completions, not only failures")
}

// TestConcurrentDuplicateCompletes: 50 completes for one payment at once,
// spread over two instances, make exactly one Pi completion and all succeed:
// at once on file_system; on netlike storage some are told to retry
// (payment_busy, storage_busy) while another instance holds the storage
// lock, and succeed when they do.
func TestConcurrentDuplicateCompletes(t *testing.T) {
	forEachStorage(t, testConcurrentDuplicateCompletes)
}

func testConcurrentDuplicateCompletes(t *testing.T, kind string) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newChaosApp(t)
	storage, srv := newSuiteStorage(t, kind)
	next := proxyTo(app.srv.URL)
	a, b := startInstance(t, pi.URL, app.srv.URL, storage), startInstance(t, pi.URL, app.srv.URL, storage)
	defer a.cancel()
	defer b.cancel()

	p := pi.CreatePayment(pitest.NewPayment{})
	status, _ := call(a.h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status)
	// The approval's watch entry, which tells B who the payer is, is written
	// within a second; the wallet takes longer than that.
	a.h.flushWatch(t.Context())
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	const n = 50
	var wg sync.WaitGroup
	var oks, busy, storageBusy atomic.Int64
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := a.h
			if i%2 == 1 {
				h = b.h
			}
			// A client told to retry (payment_busy: the payment's lock in
			// this instance; storage_busy: its storage lock) retries, as the
			// SDK's frontend would.
			for try := 0; try < 10; try++ {
				status, code := call(h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
				switch {
				case status == http.StatusOK:
					oks.Add(1)
				case code == "payment_busy":
					busy.Add(1)
					continue
				case code == "storage_busy":
					storageBusy.Add(1)
					continue
				default:
					t.Logf("complete #%d via instance %d: %d %s", i, i%2, status, code)
				}
				return
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent completes answered in %v; retried: %d payment_busy, %d storage_busy",
		n, time.Since(start).Round(time.Millisecond), busy.Load(), storageBusy.Load())
	logStorageCounts(t, srv)
	if kind == fileSystemStorage {
		// The guard's file locks are tried without waiting: no duplicate is
		// ever told to come back. A storage without TryLock that retries a
		// held lock once a second makes some wait past the lock wait.
		assert.Zero(t, busy.Load(), "payment_busy answers on file_system")
		assert.Zero(t, storageBusy.Load(), "storage_busy answers on file_system")
	}
	assert.Equal(t, 1, pi.CallsFor(pitest.EndpointComplete, p.Identifier), "exactly one Pi /complete")
	assert.EqualValues(t, n, oks.Load(), "every duplicate is answered as verified")
	app.mu.Lock()
	assert.Equal(t, n, app.accepted[p.Identifier])
	app.mu.Unlock()
}

// faultyStorage is a storage whose writes fail on demand, as a full disk
// (ENOSPC) or a read-only one (EROFS, deletes too) would. Over file
// storage, its lock files stay on the real disk (Unwrap), as the guard's
// file locks would on a disk that still has room for a few bytes.
type faultyStorage struct {
	certmagic.Storage
	mu       sync.Mutex
	err      error         // every Store fails with it while set
	failRate atomic.Uint64 // percent of Stores that fail with ENOSPC at random
	refused  atomic.Int64
}

// newFaultyStorage is faulty file storage in a temporary directory.
func newFaultyStorage(t testing.TB) *faultyStorage { return newFaultyStorageOn(testStorage(t)) }

// newFaultyStorageOn is faulty storage over base.
func newFaultyStorageOn(base certmagic.Storage) *faultyStorage { return &faultyStorage{Storage: base} }

// Unwrap returns the storage underneath, for the guard's file locks.
func (s *faultyStorage) Unwrap() certmagic.Storage { return s.Storage }

func (s *faultyStorage) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *faultyStorage) failure(key string) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err == nil && rand.N(uint64(100)) < s.failRate.Load() {
		err = syscall.ENOSPC
	}
	if err != nil {
		s.refused.Add(1)
		return &fs.PathError{Op: "write", Path: key, Err: err}
	}
	return nil
}

func (s *faultyStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.failure(key); err != nil {
		return err
	}
	return s.Storage.Store(ctx, key, value)
}

func (s *faultyStorage) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	readOnly := errors.Is(s.err, syscall.EROFS)
	s.mu.Unlock()
	if readOnly {
		return &fs.PathError{Op: "remove", Path: key, Err: syscall.EROFS}
	}
	return s.Storage.Delete(ctx, key)
}

// startChaos restarts an instance of cl every 300 ms and takes the app down
// for one 150 ms tick in five, until the returned stop is called (it waits
// for the last restart to finish).
func startChaos(cl *cluster, appDown *atomic.Bool) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(150 * time.Millisecond):
			}
			if i%2 == 0 {
				cl.restart()
			}
			appDown.Store(i%5 == 1)
		}
	})
	return func() { close(done); wg.Wait() }
}

// submittedOverFaultyStorage starts one instance over faulty storage in
// front of a chaos app, and approves a payment whose transaction the user
// then submitted. The caller stops the instance.
func submittedOverFaultyStorage(t *testing.T, kind string) (*pitest.Server, *chaosApp, *faultyStorage, *chaosInstance, piclient.Payment, string) {
	t.Helper()
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newChaosApp(t)
	base, _ := newSuiteStorage(t, kind)
	storage := newFaultyStorageOn(base)
	in := startInstance(t, pi.URL, app.srv.URL, storage)
	p := pi.CreatePayment(pitest.NewPayment{})
	status, _ := call(in.h, proxyTo(app.srv.URL), DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	return pi, app, storage, in, p, txid
}

// 12.1: the disk is full while Pi completes a payment and the app is down.
// The completion is still owed: listed, counted, redelivered once the app is
// back (with the disk still full), and written once the disk has room.
func TestFaultDiskFullWhileAppDown(t *testing.T) { forEachStorage(t, testFaultDiskFullWhileAppDown) }

func testFaultDiskFullWhileAppDown(t *testing.T, kind string) {
	pi, app, storage, in, p, txid := submittedOverFaultyStorage(t, kind)
	defer in.stop()
	next, h := proxyTo(app.srv.URL), in.h

	storage.fail(syscall.ENOSPC)
	app.down.Store(true)
	raw, _ := json.Marshal(map[string]string{"paymentId": p.Identifier, "txid": txid})
	req := httptest.NewRequest(http.MethodPost, DefaultCompletePath, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	require.NoError(t, h.ServeHTTP(w, req, next))
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Contains(t, w.Body.String(), "upstream_unavailable")
	assert.Contains(t, w.Body.String(), "keeps it in memory", "the client is told the truth")

	owed, err := h.store.Owed(t.Context())
	require.NoError(t, err)
	assert.Equal(t, []string{p.Identifier}, owed, "owed although never written")
	live.Store(h, struct{}{})
	defer live.Delete(h)
	aw := httptest.NewRecorder()
	require.NoError(t, serveDeliveries(aw, httptest.NewRequest(http.MethodGet, "/pi_guard/deliveries", nil)))
	assert.Contains(t, aw.Body.String(), p.Identifier, "listed by the admin API")
	assert.Eventually(t, func() bool { return owedGauge(t, h, ledger.Pending) == 1 },
		2*time.Second, 10*time.Millisecond, "counted in the owed gauge")

	app.down.Store(false) // the app is back; the disk is still full
	assert.Eventually(t, func() bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		return app.accepted[p.Identifier] == 1
	}, 5*time.Second, 10*time.Millisecond, "redelivered from memory")
	exists := func(key string) bool { return storage.Storage.Exists(context.Background(), key) }
	assert.False(t, exists(h.store.RecordKey(p.Identifier)))

	storage.fail(nil)
	assert.Eventually(t, func() bool { return exists(h.store.RecordKey(p.Identifier)) && len(h.store.Unsaved()) == 0 },
		5*time.Second, 10*time.Millisecond, "written once the disk has room")
	assert.False(t, exists(h.store.OwedKey(p.Identifier)))
	assert.Zero(t, pi.RedundantCompletes(p.Identifier))
}

// 12.1: read-only storage while Pi completes a payment and the app is up:
// the payment is delivered (Pi completed it; the app is its best chance),
// its record is written once storage is writable again, and a replay then
// needs no Pi call.
func TestFaultReadOnlyStorageWhileAppUp(t *testing.T) {
	forEachStorage(t, testFaultReadOnlyStorageWhileAppUp)
}

func testFaultReadOnlyStorageWhileAppUp(t *testing.T, kind string) {
	pi, app, storage, in, p, txid := submittedOverFaultyStorage(t, kind)
	defer in.stop()
	next, h := proxyTo(app.srv.URL), in.h

	storage.fail(syscall.EROFS)
	status, code := call(h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	storage.fail(nil)
	exists := func(key string) bool { return storage.Storage.Exists(context.Background(), key) }
	assert.Eventually(t, func() bool { return exists(h.store.RecordKey(p.Identifier)) && len(h.store.Unsaved()) == 0 },
		5*time.Second, 10*time.Millisecond, "the record is written once storage is writable")

	pi.ResetCalls()
	status, code = call(h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	assert.Zero(t, pi.Calls(pitest.EndpointGet)+pi.Calls(pitest.EndpointComplete), "replayed from the record")
	app.mu.Lock()
	assert.Equal(t, 2, app.accepted[p.Identifier])
	app.mu.Unlock()
}

// 12.2: one delivery hangs in the app. The client's forward gives up after
// timeout, and the worker keeps delivering the other owed payments on time.
func TestFaultHungAppDelivery(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newChaosApp(t)
	in := startInstance(t, pi.URL, app.srv.URL, testStorage(t), func(h *Handler) { h.Timeout = caddyDuration(time.Second) })
	defer in.stop()
	h := in.h
	next := proxyTo(app.srv.URL)
	submitted := func() (string, string) {
		p := pi.CreatePayment(pitest.NewPayment{})
		status, _ := call(h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
		require.Equal(t, http.StatusOK, status)
		txid, err := pi.SubmitTransaction(p.Identifier)
		require.NoError(t, err)
		return p.Identifier, txid
	}

	hungID, hungTx := submitted()
	release := make(chan struct{})
	app.hang.Store(hungID, release)
	hungDone := make(chan int, 1)
	start := time.Now()
	go func() {
		status, _ := call(h, next, DefaultCompletePath, map[string]string{"paymentId": hungID, "txid": hungTx})
		hungDone <- status
	}()
	defer func() { close(release); <-hungDone }()
	// Past the grace before the worker may take the hung payment's record.
	time.Sleep(1500 * time.Millisecond)
	select {
	case status := <-hungDone:
		assert.Equal(t, http.StatusBadGateway, status)
		assert.Less(t, time.Since(start), 1400*time.Millisecond+500*time.Millisecond)
		hungDone <- status
	default:
		t.Error("the client's forward to a hung app did not end after timeout")
	}

	var others []string
	for range 8 {
		id, txid := submitted()
		app.refuse.Store(id, http.StatusServiceUnavailable)
		status, code := call(h, next, DefaultCompletePath, map[string]string{"paymentId": id, "txid": txid})
		require.Equal(t, http.StatusBadGateway, status, code)
		others = append(others, id)
	}
	for _, id := range others {
		app.refuse.Delete(id)
	}
	assert.Eventually(t, func() bool {
		app.mu.Lock()
		defer app.mu.Unlock()
		for _, id := range others {
			if app.accepted[id] != 1 {
				return false
			}
		}
		return true
	}, 1500*time.Millisecond, 10*time.Millisecond, "the other owed payments are redelivered while one delivery hangs")
}

// 12.3: the incomplete route completes a payment whose /complete answer is
// lost and whose re-read fails. The approval this guard remembered is
// consumed, so the later complete reads the payment instead of posting a
// second /complete.
func TestFaultIncompleteRouteConsumesApproval(t *testing.T) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	var failReads atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && failReads.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/complete") {
			failReads.Store(true) // the re-read after the lost answer fails
		}
		pi.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	app := newChaosApp(t)
	in := startInstance(t, front.URL+"/v2", app.srv.URL, testStorage(t))
	defer in.stop()
	h := in.h
	next := proxyTo(app.srv.URL)
	p := pi.CreatePayment(pitest.NewPayment{})
	status, _ := call(h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Times: 1})
	status, code := callRaw(h, next, DefaultIncompletePath, []byte(`{"payment":{"identifier":"`+p.Identifier+`"}}`))
	require.Equal(t, http.StatusBadGateway, status, code)
	got, _ := pi.Payment(p.Identifier)
	require.True(t, got.Status.DeveloperCompleted, "Pi completed it; the guard did not hear")

	failReads.Store(false)
	status, code = call(h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	assert.Zero(t, pi.RedundantCompletes(p.Identifier), "no second /complete")
	assert.Equal(t, 1, pi.CallsFor(pitest.EndpointComplete, p.Identifier))
}

// The one redundant /complete the approval shortcut allows: instance A
// approved (and remembers it), the completion went to instance B, and B lost
// both Pi's answer to /complete and the re-read (its client got a Pi error,
// no record was written). The retry reaches A, which posts /complete from
// its memory: Pi refuses it as already completed, the re-read settles it,
// and the app gets the payment once.
func TestApprovalShortcutAfterAnotherInstanceLostTheAnswer(t *testing.T) {
	forEachStorage(t, testApprovalShortcutAfterAnotherInstanceLostTheAnswer)
}

func testApprovalShortcutAfterAnotherInstanceLostTheAnswer(t *testing.T, kind string) {
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newChaosApp(t)
	base, _ := newSuiteStorage(t, kind)
	storage := newFaultyStorageOn(base)
	next := proxyTo(app.srv.URL)
	a := startInstance(t, pi.URL, app.srv.URL, storage)
	defer a.stop()
	b := startInstance(t, pi.URL, app.srv.URL, storage)
	defer b.stop()

	p := pi.CreatePayment(pitest.NewPayment{Amount: "1"})
	status, code := call(a.h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, code)
	a.h.flushWatch(t.Context()) // B learns the approver from the watch entry
	// The client retried its approval on B, which remembers it too (so B
	// posts /complete without a read first).
	status, code = call(b.h, next, DefaultApprovePath, map[string]string{"paymentId": p.Identifier})
	require.Equal(t, http.StatusOK, status, code)
	txid, err := pi.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Times: 1})
	pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503})
	status, code = call(b.h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusBadGateway, status)
	require.Equal(t, "pi_unavailable", code)
	done, _ := pi.Payment(p.Identifier)
	require.True(t, done.Status.DeveloperCompleted, "Pi completed it; B does not know")

	pi.ClearFaults()
	status, code = call(a.h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	assert.Equal(t, 1, pi.RedundantCompletes(p.Identifier))
	app.mu.Lock()
	assert.Equal(t, 1, app.accepted[p.Identifier])
	app.mu.Unlock()

	// A retry on B, which never had the approval, reads first: no more.
	status, code = call(b.h, next, DefaultCompletePath, map[string]string{"paymentId": p.Identifier, "txid": txid})
	require.Equal(t, http.StatusOK, status, code)
	assert.Equal(t, 1, pi.RedundantCompletes(p.Identifier))
}
