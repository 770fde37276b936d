package piguard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// noticeApp is the upstream app of the reconciler's tests: like chaosApp it
// verifies every header and can fail or be down, and it also keeps the
// notices it accepted.
type noticeApp struct {
	srv      *httptest.Server
	verifier *verify.Verifier
	appFaults
	mu       sync.Mutex
	verified map[string][]*verify.Claims // accepted verified requests by payment id
	notice   map[string][]*verify.Claims // accepted notices by payment id, but approve's
	forged   int
}

func newNoticeApp(t testing.TB) *noticeApp {
	a := &noticeApp{verifier: unitVerifier(t), verified: map[string][]*verify.Claims{}, notice: map[string][]*verify.Claims{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *noticeApp) serve(w http.ResponseWriter, r *http.Request) {
	if a.failed(w) {
		return
	}
	var claims *verify.Claims
	var err error
	into := a.verified
	switch {
	case r.Header.Get(verify.HeaderVerified) != "":
		claims, err = a.verifier.Verify(r)
	case r.Header.Get(verify.HeaderNotice) != "":
		claims, err = a.verifier.VerifyNotice(r)
		into = a.notice
	default:
		w.WriteHeader(http.StatusOK)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.forged++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if claims.Phase == verify.PhaseApprove {
		w.WriteHeader(http.StatusOK) // the guard's own approval notices are not kept
		return
	}
	into[claims.Subject] = append(into[claims.Subject], claims)
	w.WriteHeader(http.StatusOK)
}

func (a *noticeApp) verifiedFor(id string) []*verify.Claims {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*verify.Claims(nil), a.verified[id]...)
}

func (a *noticeApp) notices(id string) []*verify.Claims {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*verify.Claims(nil), a.notice[id]...)
}

// startReconcilingInstance is startInstance with the reconciler running, on
// short durations, with metrics shared by every instance.
func startReconcilingInstance(t testing.TB, piURL, appURL string, storage certmagic.Storage, m *metrics) *chaosInstance {
	h := &Handler{
		APIKey: pitest.DefaultAPIKey, APIURL: piURL, Network: piclient.NetworkTestnet, SigningKey: unitSigningKey,
		Timeout: caddyDuration(2 * time.Second), RedeliverTo: appURL, RedeliverBackoff: caddyDuration(20 * time.Millisecond),
		RedeliverAttempts: 1000,
		ReconcileAfter:    caddyDuration(200 * time.Millisecond), ReconcileGiveUp: caddyDuration(1500 * time.Millisecond),
		ReconcileCancel: true,
		metrics:         m,
		// The suite plays many users from one test address.
		LookupRate: 1e6, LookupRatePerClient: 1e6,
	}
	h.logger = zap.NewNop()
	require.NoError(t, h.provision(storage))
	require.NoError(t, h.Validate())
	ctx, cancel := context.WithCancel(context.Background())
	go h.redeliverLoop(ctx)
	h.startReconciler(ctx)
	return &chaosInstance{h: h, cancel: cancel}
}

// What the user does after the guard approved the payment.
const (
	fateNormal      = "completes normally"
	fateVanishPaid  = "vanishes after signing"
	fateVanishEarly = "vanishes before signing"
	fateCancels     = "cancels in the wallet"
	fateUnverified  = "tx Pi never verifies"
)

// TestFaultInjectionVanishedClients runs payment flows in which a share of
// clients vanish right after the wallet signed (and others before signing,
// or cancel), over two instances with the reconciler on, restarts, Pi
// faults and a failing app, and no client ever comes back. At the end every
// payment with a verified transaction was completed at Pi exactly once and
// reached the app as verified; nothing else was completed or delivered as
// verified; every other approved payment was announced with a notice.
// CHAOS_PAYMENTS raises the number of flows.
func TestFaultInjectionVanishedClients(t *testing.T) {
	forEachStorage(t, testFaultInjectionVanishedClients)
}

func testFaultInjectionVanishedClients(t *testing.T, kind string) {
	payments := 100
	if n := os.Getenv("CHAOS_PAYMENTS"); n != "" {
		fmt.Sscan(n, &payments)
	}
	pi := pitest.NewServer(pitest.Options{Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	app := newNoticeApp(t)
	storage, srv := newSuiteStorage(t, kind)
	next := proxyTo(app.srv.URL)
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	require.NoError(t, err)
	cl := &cluster{start: func() *chaosInstance { return startReconcilingInstance(t, pi.URL, app.srv.URL, storage, m) }}
	cl.instances = []*chaosInstance{cl.start(), cl.start()}
	defer cl.stop()

	pi.InjectFault(pitest.EndpointGet, pitest.Fault{Status: 503, Fraction: 0.06})
	pi.InjectFault(pitest.EndpointApprove, pitest.Fault{DropResponse: true, Fraction: 0.06})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{DropResponse: true, Fraction: 0.1})
	pi.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 500, Fraction: 0.06})
	pi.InjectFault(pitest.EndpointCancel, pitest.Fault{Status: 502, Fraction: 0.1})
	app.failRate.Store(10)

	stopChaos := startChaos(cl, &app.down) // restarts and app outages while the flows run

	type flow struct {
		id, txid, fate string
		approved       bool // the client got a 200 from approve
	}
	fates := []string{fateNormal, fateNormal, fateNormal, fateVanishPaid, fateVanishPaid, fateVanishPaid, fateVanishEarly, fateCancels, fateUnverified, fateVanishPaid}
	flows := make([]*flow, payments)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f := &flow{id: pi.CreatePayment(pitest.NewPayment{Amount: "1.5"}).Identifier, fate: fates[i%len(fates)]}
			flows[i] = f
			for try := 0; try < 6 && !f.approved; try++ {
				status, code := call(cl.pick(), next, DefaultApprovePath, map[string]string{"paymentId": f.id})
				f.approved = status == http.StatusOK || code == "already_approved"
			}
			if !f.approved {
				return // the frontend never got the approval: the user does not sign
			}
			var err error
			switch f.fate {
			case fateVanishEarly:
				return
			case fateCancels:
				assert.NoError(t, pi.UserCancel(f.id))
				return
			case fateUnverified:
				f.txid, _ = pi.SubmitTransactionWith(f.id, pitest.Tx{Unverified: true})
				return
			}
			// An error here means the guard gave up on the payment first (a
			// very slow machine): nothing is paid, which the checks allow.
			if f.txid, err = pi.SubmitTransaction(f.id); err != nil {
				return
			}
			if f.fate == fateVanishPaid {
				return // the phone went offline right after the wallet signed
			}
			for try := 0; try < 3; try++ {
				if status, _ := call(cl.pick(), next, DefaultCompletePath, map[string]string{"paymentId": f.id, "txid": f.txid}); status == http.StatusOK {
					return
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(2 * time.Second) // restarts and outages go on while the reconciler works
	stopChaos()

	// The weather clears; no client comes back. The reconciler and the
	// redelivery worker must finish everything on their own.
	pi.ClearFaults()
	app.down.Store(false)
	app.failRate.Store(0)
	deadline := time.Now().Add(60 * time.Second)
	for settled := 0; settled < 3; { // three quiet looks in a row: a listing can miss a file being replaced
		h := cl.pick()
		watched, err1 := h.store.Watched(context.Background())
		owed, err2 := h.store.Owed(context.Background())
		if err1 == nil && err2 == nil && len(watched)+len(owed) == 0 {
			settled++
		} else {
			settled = 0
		}
		if time.Now().After(deadline) {
			require.Empty(t, watched, "watched payments did not settle")
			require.Empty(t, owed, "owed deliveries did not drain")
		}
		time.Sleep(50 * time.Millisecond)
	}

	var violations []string
	byFate := map[string]int{}
	paid, piCompleted, delivered, noticed := 0, 0, 0, 0
	for _, f := range flows {
		byFate[f.fate]++
		p, _ := pi.Payment(f.id)
		verifiedTx := p.Transaction != nil && p.Transaction.Verified && p.Status.TransactionVerified
		done := p.Status.DeveloperCompleted
		got := app.verifiedFor(f.id)
		if verifiedTx {
			paid++
		}
		if done {
			piCompleted++
		}
		if len(got) > 0 {
			delivered++
		}
		switch {
		case verifiedTx && !done:
			violations = append(violations, f.id+": verified transaction, never completed at Pi ("+f.fate+")")
		case verifiedTx && len(got) == 0:
			violations = append(violations, f.id+": completed at Pi, never delivered to the app as verified ("+f.fate+")")
		case !verifiedTx && done:
			violations = append(violations, f.id+": completed at Pi without a verified transaction ("+f.fate+")")
		}
		for _, c := range got {
			if !done || c.Payment.TxID() != p.TxID() {
				violations = append(violations, f.id+": delivered as verified without Pi completion with its txid")
			}
		}
		if n := pi.RedundantCompletes(f.id); n > 0 {
			violations = append(violations, fmt.Sprintf("%s: %d redundant Pi /complete calls", f.id, n))
		}
		if f.approved && !verifiedTx {
			if len(app.notices(f.id)) == 0 {
				violations = append(violations, f.id+": approved, never paid, and the app was never told ("+f.fate+")")
			} else {
				noticed++
			}
		}
	}
	app.mu.Lock()
	if app.forged > 0 {
		violations = append(violations, fmt.Sprintf("%d headers failed verification at the app", app.forged))
	}
	app.mu.Unlock()

	var fateRows, outcomeRows []string
	for k, v := range byFate {
		fateRows = append(fateRows, fmt.Sprintf("  %-32s %6d", k, v))
	}
	for _, o := range []string{reconciledCompleted, reconciledAlreadyCompleted, reconciledByClient, reconciledCancelled,
		reconciledCancelledByGuard, reconciledGaveUp, reconciledRefused, reconciledNotFound, reconciledNoticeFailed, reconciledUndeliverable} {
		if v := counterValue(t, reg, "caddy_pi_guard_reconciled_total", "outcome", o); v > 0 {
			outcomeRows = append(outcomeRows, fmt.Sprintf("  %-32s %6.0f", o, v))
		}
	}
	sort.Strings(fateRows)
	t.Logf("vanished-client fault injection summary\n"+
		"  payments                         %6d\n"+
		"  with a verified transaction      %6d\n"+
		"  completed at Pi                  %6d\n"+
		"  delivered to the app (verified)  %6d\n"+
		"  unpaid, app told by a notice     %6d\n"+
		"  instance restarts                %6d\n"+
		"  Pi calls get/approve/complete/cancel %d/%d/%d/%d\n"+
		"  invariant violations             %6d\n"+
		"what the users did:\n%s\nreconciler outcomes:\n%s",
		payments, paid, piCompleted, delivered, noticed, cl.restarts.Load(),
		pi.Calls(pitest.EndpointGet), pi.Calls(pitest.EndpointApprove), pi.Calls(pitest.EndpointComplete), pi.Calls(pitest.EndpointCancel),
		len(violations), strings.Join(fateRows, "\n"), strings.Join(outcomeRows, "\n"))
	logStorageCounts(t, srv)
	assert.Empty(t, violations)
	assert.Greater(t, paid, payments/2, "the suite must exercise paid payments")
	assert.Positive(t, counterValue(t, reg, "caddy_pi_guard_reconciled_total", "outcome", reconciledCompleted), "the reconciler must complete some")
}
