package guardlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const sample = `{"level":"info","ts":1,"logger":"http","msg":"server running","name":"srv0"}
{"level":"info","ts":2,"logger":"http.handlers.pi_guard","msg":"payment step","phase":"approve","payment_id":"abc","outcome":"approved","pi_calls":2,"pi_latency":0.100250,"duration":0.1015}
{"level":"warn","ts":3,"logger":"http.handlers.pi_guard","msg":"payment refused","phase":"complete","payment_id":"abc","outcome":"txid_mismatch","pi_calls":1,"pi_latency":0.05,"duration":0.051}
{"level":"info","ts":4,"logger":"other","msg":"payment step","duration":1,"pi_latency":0}
{"level":"info","ts":5,"logger":"http.handlers.pi_guard","msg":"payment step","phase":"complete","payment_id":"abc","outcome":"completed","pi_calls":1,"pi_latency":"50ms","duration":"51.5ms","total":"60ms","txid":"ff"}
{"level":"info","ts":6,"logger":"http.handlers.pi_guard","msg":"payment step","phase":"approve","payment_id":"def","outcome":"approved","pi_calls":2,"pi_latency":0.1,"duration":0.051,"total":0.110,"upstream":0.008}
`

func TestRead(t *testing.T) {
	steps, err := Read(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 3 {
		t.Fatalf("got %d steps: %+v", len(steps), steps)
	}
	a, c, u := steps[0], steps[1], steps[2]
	if a.Phase != "approve" || a.PaymentID != "abc" || a.Outcome != "approved" || a.PiCalls != 2 {
		t.Errorf("approve step %+v", a)
	}
	if got := a.Added(); got < 1249*time.Microsecond || got > 1251*time.Microsecond {
		t.Errorf("approve added %v, want 1.25ms", got)
	}
	if got := a.TotalMinusPi(); got != a.Added() {
		t.Errorf("approve without total: TotalMinusPi %v", got)
	}
	if c.Phase != "complete" || c.Added() != 1500*time.Microsecond || c.TotalMinusPi() != 10*time.Millisecond {
		t.Errorf("complete step %+v added %v total-pi %v", c, c.Added(), c.TotalMinusPi())
	}
	// Pi called after forwarding: duration − pi_latency would be negative;
	// with the upstream's time logged the guard's time is exact.
	if got := u.Added(); got < 1999*time.Microsecond || got > 2001*time.Microsecond {
		t.Errorf("step with upstream: added %v, want 2ms", got)
	}
}

func TestReadFromStopsAtTheLastWholeLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caddy.log")
	partial := `{"level":"info","logger":"http.handlers.pi_guard","msg":"payment step","duration":0.1`
	if err := os.WriteFile(path, []byte(sample+partial), 0o600); err != nil {
		t.Fatal(err)
	}
	steps, off, err := ReadFrom(path, 0)
	if err != nil || len(steps) != 3 || off != int64(len(sample)) {
		t.Fatalf("steps %d offset %d err %v", len(steps), off, err)
	}
	steps, off2, err := ReadFrom(path, off)
	if err != nil || len(steps) != 0 || off2 != off {
		t.Fatalf("again: steps %d offset %d err %v", len(steps), off2, err)
	}
}
