package integration

// The cluster guarantee, with real processes: two Caddy processes sharing one
// storage never complete a payment twice nor deliver it zero times, and only
// one of them redelivers a given record at a time. The harness is in
// cluster_harness_test.go.

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// Fifty concurrent completes of one payment, alternating between the two
// instances: Pi completes it once, every client hears 200 and the app gets
// fifty valid verified deliveries.
func TestClusterConcurrentCompletesCompleteOnce(t *testing.T) {
	forEachClusterStorage(t, testClusterConcurrentCompletesCompleteOnce)
}

func testClusterConcurrentCompletesCompleteOnce(t *testing.T, kind string) {
	c := startCluster(t, clusterOptions{storage: kind})
	a, b := c.procs[0], c.procs[1]
	id, txid := c.submitted(a)

	const n = 50
	type answer struct {
		via    string
		status int
		body   string
		err    error
	}
	answers := make([]answer, n)
	ready := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		proc := c.procs[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			status, body, err := c.completeRetrying(proc, id, txid)
			answers[i] = answer{proc.name, status, body, err}
		}()
	}
	start := time.Now()
	close(ready)
	wg.Wait()
	t.Logf("%d concurrent completes through %s and %s answered in %v", n, a.name, b.name, time.Since(start).Round(time.Millisecond))

	var bad []string
	for i, ans := range answers {
		if ans.err != nil || ans.status != http.StatusOK {
			bad = append(bad, fmt.Sprintf("#%d via %s: status %d, err %v, body %s", i, ans.via, ans.status, ans.err, ans.body))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d completes were not answered 200:\n  %s", len(bad), n, strings.Join(bad, "\n  "))
	}
	c.checkCompletedOnce([]string{id})
	c.checkNoInvalidHeaders()

	events := c.app.eventsFor(id)
	jtis := map[string]bool{}
	for _, e := range events {
		if e.Via != viaClient || !e.accepted() {
			t.Errorf("unexpected delivery of %s through %s (status %d): every client was answered by its own forward", id, e.Via, e.Status)
		}
		jtis[e.JTI] = true
	}
	if len(events) != n || len(jtis) != n {
		t.Errorf("the app received %d verified deliveries (%d distinct tokens) for %s; want %d\n%s", len(events), len(jtis), id, n, c.report([]string{id}))
	}
	c.waitSettled([]string{id}, 5*time.Second)
	if got := len(c.app.eventsFor(id)); got != n {
		t.Errorf("the app received %d verified deliveries after the record settled; want %d (a delivered record was redelivered)\n%s", got, n, c.report([]string{id}))
	}
	c.logStorageCounts()
	c.checkNoBusyOnFiles()
}

// The app fails the first deliveries of several payments, each completed
// through both instances at once; with both redelivery workers running, every
// payment ends delivered, none is completed twice at Pi, every failed attempt
// is recorded once, and the redeliveries of a record never overlap.
func TestClusterRedeliveryAfterAppFailures(t *testing.T) {
	forEachClusterStorage(t, testClusterRedeliveryAfterAppFailures)
}

func testClusterRedeliveryAfterAppFailures(t *testing.T, kind string) {
	c := startCluster(t, clusterOptions{storage: kind})
	const payments, failFirst = 6, 5
	c.app.set(func(a *clusterApp) {
		a.failFirst = failFirst
		a.hold = 30 * time.Millisecond
	})

	ids := make([]string, payments)
	txids := make([]string, payments)
	for i := range payments {
		ids[i], txids[i] = c.submitted(c.procs[i%2])
	}

	// Each payment's complete callback reaches both instances at once, as
	// when a client retries against another node behind a load balancer.
	type answer struct {
		id, via string
		status  int
		body    string
		err     error
	}
	var mu sync.Mutex
	var answers []answer
	ready := make(chan struct{})
	var wg sync.WaitGroup
	for i := range payments {
		for _, proc := range c.procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-ready
				status, body, err := c.completeRetrying(proc, ids[i], txids[i])
				mu.Lock()
				answers = append(answers, answer{ids[i], proc.name, status, body, err})
				mu.Unlock()
			}()
		}
	}
	start := time.Now()
	close(ready)
	wg.Wait()
	t.Logf("%d completes answered in %v", len(answers), time.Since(start).Round(time.Millisecond))
	for _, ans := range answers {
		// 502 upstream_refused: the app failed (503) and the guard says so.
		if ans.err != nil || (ans.status != http.StatusOK && (ans.status != http.StatusBadGateway || !strings.Contains(ans.body, "upstream_refused"))) {
			t.Errorf("complete of %s via %s: status %d, err %v, body %s; want 200 or 502 upstream_refused", ans.id, ans.via, ans.status, ans.err, ans.body)
		}
	}

	took := c.waitSettled(ids, 20*time.Second)
	t.Logf("every payment delivered %v after the clients were answered", took.Round(time.Millisecond))

	c.checkCompletedOnce(ids)
	c.checkNoInvalidHeaders()
	c.checkRedeliveries(ids)
	recs := c.records()
	perWorker := map[string]int{}
	for _, id := range ids {
		events := c.app.eventsFor(id)
		accepted, failedRedeliveries := 0, 0
		for _, e := range events {
			if e.redelivery() {
				perWorker[e.Via]++
				if !e.accepted() {
					failedRedeliveries++
				}
			}
			if e.accepted() {
				accepted++
			}
			if want := e.N > failFirst; e.accepted() != want {
				t.Errorf("payment %s: delivery #%d was answered %d; the app fails exactly the first %d", id, e.N, e.Status, failFirst)
			}
		}
		if accepted == 0 {
			t.Errorf("payment %s was never accepted by the app\n%s", id, c.report([]string{id}))
		}
		// Every failed background attempt, whichever worker made it, is
		// counted once in the record (clients' attempts never count): the
		// read-modify-writes of the two processes never lost one another's
		// update.
		if got := recs[id].Delivery.Attempts; got != failedRedeliveries {
			t.Errorf("payment %s: the record counts %d failed attempts; the app failed %d redeliveries\n%s", id, got, failedRedeliveries, c.report([]string{id}))
		}
	}
	t.Logf("redeliveries per worker: %v", perWorker)
	c.logStorageCounts()
	c.checkNoBusyOnFiles()
	if t.Failed() {
		t.Logf("what happened:\n%s", c.report(ids))
	}
}

// One instance is killed with SIGKILL while it owes deliveries: while its
// worker is in the middle of redelivering one (holding that record's storage
// lock) and while a client's complete is being forwarded by it. The survivor
// sees every debt and delivers all of them, including the one whose lock the
// dead process left behind once that lock is stale, without a second Pi
// completion.
func TestClusterSurvivorDeliversForKilledInstance(t *testing.T) {
	forEachClusterStorage(t, testClusterSurvivorDeliversForKilledInstance)
}

func testClusterSurvivorDeliversForKilledInstance(t *testing.T, kind string) {
	c := startCluster(t, clusterOptions{storage: kind})
	victim, survivor := c.procs[0], c.procs[1]
	c.app.set(func(a *clusterApp) { a.failAll = true })

	// The victim's worker will be caught in the middle of a redelivery: the
	// app holds the first one it sends.
	held := c.app.holdNext(viaRedeliver(victim.name), "")

	// Payments completed through the victim whose deliveries failed: owed.
	const owed = 4
	var ids []string
	for i := range owed {
		id, txid := c.submitted(c.procs[i%2])
		status, body, err := c.complete(victim, id, txid)
		if err != nil || status != http.StatusBadGateway {
			t.Fatalf("complete of %s through %s: status %d, err %v, body %s; want 502 upstream_refused", id, victim.name, status, err, body)
		}
		ids = append(ids, id)
	}

	var lockedID string
	select {
	case lockedID = <-held.arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("the worker of %s never redelivered\n%s", victim.name, c.report(ids))
	}

	// And a client's complete is in flight through the victim: Pi has
	// completed the payment and the victim is forwarding it. The payment was
	// approved through the survivor, as when a load balancer spreads one
	// user's callbacks over the nodes: the survivor took and released this
	// payment's lock moments before the victim took it.
	inflightID, inflightTx := c.submitted(survivor)
	forwarded := c.app.holdNext(viaClient, inflightID)
	clientDone := make(chan error, 1)
	go func() {
		status, body, err := c.complete(victim, inflightID, inflightTx)
		if err == nil {
			err = fmt.Errorf("status %d, body %s", status, body)
		}
		clientDone <- err
	}()
	select {
	case <-forwarded.arrived:
	case <-time.After(10 * time.Second):
		t.Fatalf("the complete of %s through %s never reached the app\n%s", inflightID, victim.name, c.report([]string{inflightID}))
	}
	ids = append(ids, inflightID)

	victim.kill(t)
	killed := time.Now()
	t.Logf("killed %s (SIGKILL) while it redelivered %s and forwarded %s", victim.name, lockedID, inflightID)
	select {
	case err := <-clientDone:
		t.Logf("the client of the killed instance got: %v", err)
	case <-time.After(5 * time.Second):
		t.Errorf("the client of the killed instance got no answer")
	}

	// The survivor sees every debt in the shared storage.
	rows, err := survivor.deliveries()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, r := range rows {
		listed = append(listed, fmt.Sprint(r["payment_id"]))
	}
	sort.Strings(listed)
	want := append([]string(nil), ids...)
	sort.Strings(want)
	if strings.Join(listed, ",") != strings.Join(want, ",") {
		t.Errorf("right after the kill, the admin API of %s lists %v as owed; want %v", survivor.name, listed, want)
	}

	c.app.set(func(a *clusterApp) { a.failAll = false })
	// A lock of a dead process is stale 10 s after its last refresh
	// (certmagic FileStorage; the netlike storage: 5 s, tried once a
	// second): the survivor should deliver everything within about 11 s.
	if _, why := c.settle(ids, 20*time.Second); why != "" {
		// Name the cause when it is the one seen: a lock file created before
		// the kill and still refreshed well after it, though the survivor
		// never held it (it would have delivered the payment).
		diagnosis := ""
		for _, l := range c.lockFiles() {
			if l.created.Before(killed) && l.updated.After(killed.Add(6*time.Second)) {
				diagnosis += fmt.Sprintf("\n  %s was created by %s before the kill (+%dms) and is still being refreshed %v after it (+%dms): "+
					"the survivor refreshes a lock it does not hold (certmagic FileStorage: the keepLockfileFresh goroutine of a lock the "+
					"survivor took and released earlier keeps refreshing whatever lock file sits at that name), so it never turns stale "+
					"and the payment is never redelivered", l.name, victim.name, l.created.Sub(c.app.epoch).Milliseconds(),
					l.updated.Sub(killed).Round(time.Millisecond), l.updated.Sub(c.app.epoch).Milliseconds())
			}
		}
		t.Fatalf("the survivor did not deliver every payment within 20s of the kill: %s%s\n%s%s", why, diagnosis, c.report(ids), c.locks())
	}
	t.Logf("the survivor delivered every payment within %v of the kill", time.Since(killed).Round(time.Millisecond))

	c.checkCompletedOnce(ids)
	c.checkNoInvalidHeaders()
	c.checkRedeliveries(ids)
	for _, id := range ids {
		var byVictim, bySurvivor int
		for _, e := range c.app.eventsFor(id) {
			switch {
			case e.accepted() && e.Via == viaRedeliver(survivor.name):
				bySurvivor++
			case e.accepted():
				byVictim++
			}
		}
		if bySurvivor != 1 || byVictim != 0 {
			t.Errorf("payment %s: the app accepted %d redeliveries from the survivor %s and %d other deliveries; want exactly one from the survivor\n%s",
				id, bySurvivor, survivor.name, byVictim, c.report([]string{id}))
		}
	}
	c.logStorageCounts()
	if t.Failed() {
		t.Logf("what happened:\n%s", c.report(ids))
	}
}

// A fast wallet and a load balancer: payments arrive 50 ms apart; each is
// approved through one instance and completed, twice at once, through the
// other, as soon as the transaction is submitted, before the approval's
// watch entry (written in the next batch, within a second) is in storage. Every payment is
// completed at Pi once and delivered. The log says how often clients were
// told to retry and how many watch entries were left behind for payments
// already completed (the approver's batch landed after the completion's
// removal): what a networked storage and the batched watch list cost.
func TestClusterFastWalletAcrossInstances(t *testing.T) {
	forEachClusterStorage(t, testClusterFastWalletAcrossInstances)
}

func testClusterFastWalletAcrossInstances(t *testing.T, kind string) {
	c := startCluster(t, clusterOptions{storage: kind})
	const payments = 20
	ids := make([]string, payments)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	start := time.Now()
	for i := range payments {
		time.Sleep(50 * time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			approver, completer := c.procs[i%2], c.procs[(i+1)%2]
			p := c.pi.CreatePayment(pitest.NewPayment{Amount: "1", Memo: "fast wallet"})
			ids[i] = p.Identifier
			status, body, err := c.post(approver, "/payments/approve", fmt.Sprintf(`{"paymentId":%q}`, p.Identifier))
			if err != nil || status != http.StatusOK {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("approve of %s via %s: status %d, err %v, body %s", p.Identifier, approver.name, status, err, body))
				mu.Unlock()
				return
			}
			txid, err := c.pi.SubmitTransaction(p.Identifier)
			if err != nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("submitting %s: %v", p.Identifier, err))
				mu.Unlock()
				return
			}
			var cwg sync.WaitGroup
			for range 2 {
				proc := completer
				cwg.Go(func() {
					status, body, err := c.completeRetrying(proc, p.Identifier, txid)
					if err != nil || status != http.StatusOK {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("complete of %s via %s: status %d, err %v, body %s", p.Identifier, proc.name, status, err, body))
						mu.Unlock()
					}
				})
			}
			cwg.Wait()
		}()
	}
	wg.Wait()
	t.Logf("%d payments approved and completed (twice, through the other instance) in %v", payments, time.Since(start).Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("%d requests were not answered 200:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	c.waitSettled(ids, 20*time.Second)
	c.checkCompletedOnce(ids)
	c.checkNoInvalidHeaders()
	c.checkRedeliveries(ids)
	for _, id := range ids {
		accepted := 0
		for _, e := range c.app.eventsFor(id) {
			if e.accepted() {
				accepted++
			}
		}
		if accepted == 0 {
			t.Errorf("payment %s was never accepted by the app\n%s", id, c.report([]string{id}))
		}
	}
	c.logStorageCounts()
	// An approval's watch entry, written in a batch up to a second later,
	// must not outlive the other instance's completion of its payment.
	if n := c.staleWatchEntries(); n > 0 {
		t.Errorf("%d watch entries were left for payments completed on the other instance; want none", n)
	}
}
