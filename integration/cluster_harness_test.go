package integration

// Harness of the cluster tests (cluster_test.go): a Caddy binary with
// pi_guard, built once per test run, run as two real processes that share one
// file_system storage, in front of one in-process fake Pi and one in-process
// app that checks every verified header and keeps a timeline of what it
// received.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// ---------------------------------------------------------------------------
// The Caddy binary.

var clusterBin struct {
	once sync.Once
	path string
	err  error
}

// caddyBinary builds `go build -o <dir>/caddy ./internal/netstore/cmd/caddy`
// (./caddy plus the netlike storage module) once per test run, without
// -race. The directory is stable per module root, so that go build
// finds the binary up to date on the next run (0.3 s instead of a 3 s link)
// and runs do not pile up 80 MB binaries in the temp directory.
func caddyBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("the cluster tests build Caddy and run it as separate processes")
	}
	clusterBin.once.Do(func() {
		start := time.Now()
		clusterBin.path, clusterBin.err = buildCaddy()
		if clusterBin.err == nil {
			t.Logf("built %s in %v", clusterBin.path, time.Since(start).Round(time.Millisecond))
		}
	})
	if clusterBin.err != nil {
		t.Fatalf("building Caddy with pi_guard: %v", clusterBin.err)
	}
	return clusterBin.path
}

func buildCaddy() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build Caddy: %w", err)
	}
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	root := filepath.Dir(gomod)
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("caddy-pi-guard-cluster-%x", sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "caddy")
	cmd := exec.Command(goBin, "build", "-o", bin, "./internal/netstore/cmd/caddy")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s ./internal/netstore/cmd/caddy (in %s): %v\n%s", bin, root, err, out)
	}
	return bin, nil
}

// ---------------------------------------------------------------------------
// The app behind both instances.

// Where a verified request reached the app: forwarded by an instance's
// reverse_proxy while it answered a client, or re-sent by an instance's
// redelivery worker (each instance has its own redeliver_to listener, so the
// app knows which worker sent what).
const viaClient = "client"

func viaRedeliver(name string) string { return "redeliver-" + name }

// appEvent is one verified request the app received.
type appEvent struct {
	Via        string
	ID         string // the token's sub (or the body's paymentId if it did not verify)
	JTI        string
	N          int // the app's count of verified requests for ID, this one included
	Start, End time.Time
	Status     int    // what the app answered; 0 when the guard went away first
	Err        string // why the header did not verify
}

func (e appEvent) accepted() bool { return e.Status >= 200 && e.Status < 300 }
func (e appEvent) redelivery() bool {
	return strings.HasPrefix(e.Via, "redeliver-")
}

// gate holds the first verified request that matches it until the request's
// context is done (the guard hung up or died) or the gate is released.
type gate struct {
	via, id string // "" matches any
	arrived chan string
	release chan struct{}
	taken   bool
}

type clusterApp struct {
	t        *testing.T
	verifier *verify.Verifier
	epoch    time.Time
	urls     map[string]string // via → base URL

	mu          sync.Mutex
	events      []appEvent
	failFirst   int  // answer 503 to the first failFirst verified requests of each payment
	failAll     bool // answer 503 to every verified request
	hold        time.Duration
	seen        map[string]int
	inflight    map[string]int // redeliveries being answered, per payment
	maxInflight map[string]int
	gates       []*gate
}

func newClusterApp(t *testing.T, instances ...string) *clusterApp {
	key, err := verify.HS256Key("", []byte(testSigningKey))
	require.NoError(t, err)
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}})
	require.NoError(t, err)
	a := &clusterApp{
		t: t, verifier: v, epoch: time.Now(), urls: map[string]string{},
		seen: map[string]int{}, inflight: map[string]int{}, maxInflight: map[string]int{},
	}
	vias := []string{viaClient}
	for _, name := range instances {
		vias = append(vias, viaRedeliver(name))
	}
	for _, via := range vias {
		srv := httptest.NewServer(a.handler(via))
		t.Cleanup(srv.Close)
		a.urls[via] = srv.URL
	}
	// Runs before the servers close (cleanups run last first): a held
	// request must not keep Close waiting.
	t.Cleanup(a.releaseGates)
	return a
}

func (a *clusterApp) handler(via string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(verify.HeaderVerified) == "" {
			// Approve notices and health checks: nothing to prove.
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
			return
		}
		ev := appEvent{Via: via, Start: time.Now()}
		claims, verr := a.verifier.Verify(r)
		body, _ := io.ReadAll(r.Body)
		if verr != nil {
			var cb struct {
				PaymentID string `json:"paymentId"`
			}
			_ = json.Unmarshal(body, &cb)
			ev.ID, ev.Err, ev.Status, ev.End = cb.PaymentID, verr.Error(), http.StatusUnauthorized, time.Now()
			a.mu.Lock()
			a.events = append(a.events, ev)
			a.mu.Unlock()
			http.Error(w, verr.Error(), http.StatusUnauthorized)
			return
		}
		ev.ID, ev.JTI = claims.Subject, claims.ID
		redelivery := via != viaClient

		a.mu.Lock()
		a.seen[ev.ID]++
		n := a.seen[ev.ID]
		ev.N = n
		if redelivery {
			a.inflight[ev.ID]++
			a.maxInflight[ev.ID] = max(a.maxInflight[ev.ID], a.inflight[ev.ID])
		}
		g := a.takeGate(via, ev.ID)
		hold := time.Duration(0)
		if redelivery {
			hold = a.hold // widens the window in which an overlap would show
		}
		a.mu.Unlock()

		aborted := false
		if g != nil {
			g.arrived <- ev.ID
			select {
			case <-g.release:
			case <-r.Context().Done():
				aborted = true
			}
		}
		if hold > 0 && !aborted {
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
				aborted = true
			}
		}

		a.mu.Lock()
		if redelivery {
			a.inflight[ev.ID]--
		}
		ev.End = time.Now()
		switch {
		case aborted || r.Context().Err() != nil:
			ev.Status = 0
		case a.failAll || n <= a.failFirst:
			ev.Status = http.StatusServiceUnavailable
		default:
			ev.Status = http.StatusOK
		}
		a.events = append(a.events, ev)
		a.mu.Unlock()
		if ev.Status == 0 {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ev.Status)
		fmt.Fprintf(w, `{"app":true,"accepted":%t}`, ev.accepted())
	})
}

func (a *clusterApp) takeGate(via, id string) *gate {
	for _, g := range a.gates {
		if !g.taken && (g.via == "" || g.via == via) && (g.id == "" || g.id == id) {
			g.taken = true
			return g
		}
	}
	return nil
}

// holdNext holds the next verified request that reaches the app through via
// for payment id ("" for any) until the guard that sent it goes away.
func (a *clusterApp) holdNext(via, id string) *gate {
	g := &gate{via: via, id: id, arrived: make(chan string, 1), release: make(chan struct{})}
	a.mu.Lock()
	a.gates = append(a.gates, g)
	a.mu.Unlock()
	return g
}

func (a *clusterApp) releaseGates() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.gates {
		select {
		case <-g.release:
		default:
			close(g.release)
		}
	}
}

func (a *clusterApp) set(f func(a *clusterApp)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// eventsFor returns the verified requests the app received for id, in the
// order it answered them.
func (a *clusterApp) eventsFor(id string) []appEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []appEvent
	for _, e := range a.events {
		if e.ID == id {
			out = append(out, e)
		}
	}
	return out
}

func (a *clusterApp) allEvents() []appEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]appEvent(nil), a.events...)
}

func (a *clusterApp) maxRedeliveriesInFlight(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInflight[id]
}

func (a *clusterApp) timeline(id string) string {
	var b strings.Builder
	for _, e := range a.eventsFor(id) {
		fmt.Fprintf(&b, "\n    #%-2d +%5dms..+%5dms %-13s status=%-3d jti=%.8s", e.N, e.Start.Sub(a.epoch).Milliseconds(),
			e.End.Sub(a.epoch).Milliseconds(), e.Via, e.Status, e.JTI)
		if e.Err != "" {
			fmt.Fprintf(&b, " INVALID: %s", e.Err)
		}
	}
	if b.Len() == 0 {
		return "\n    (the app received no verified request)"
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Caddy processes.

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type caddyProc struct {
	name      string
	httpPort  int
	adminPort int
	cmd       *exec.Cmd
	logs      *lockedBuffer
	exited    chan struct{}
	waitErr   error
}

func (p *caddyProc) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p.httpPort, path)
}

func (p *caddyProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *caddyProc) kill(t *testing.T) {
	t.Helper()
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("caddy %s (pid %d) did not die after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

var adminClient = &http.Client{Timeout: 5 * time.Second}

// deliveries reads GET /pi_guard/deliveries from the instance's admin API.
func (p *caddyProc) deliveries() ([]map[string]any, error) {
	resp, err := adminClient.Get(fmt.Sprintf("http://127.0.0.1:%d/pi_guard/deliveries", p.adminPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API of %s: %s: %s", p.name, resp.Status, data)
	}
	var out []map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("admin API of %s: %w: %s", p.name, err, data)
	}
	return out, nil
}

// clusterOptions tune the pi_guard directive of both instances.
type clusterOptions struct {
	timeout time.Duration // pi_guard timeout: also the grace before a fresh record may be redelivered
	storage string        // fileSystemStorage (the default) or netlikeStorage
}

// cluster is two Caddy processes sharing one storage in front of one fake Pi
// and one app.
type cluster struct {
	t      *testing.T
	bin    string
	dir    string
	kind   string         // the storage's kind
	store  clusterStorage // the storage both instances share
	busy   busyCounts     // retryable busy answers, counted by the tests that retry them
	opts   clusterOptions
	pi     *pitest.Server
	app    *clusterApp
	procs  []*caddyProc
	client *http.Client
}

var clusterNames = []string{"A", "B"}

func startCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	bin := caddyBinary(t)
	if opts.timeout == 0 {
		opts.timeout = 10 * time.Second
	}
	pi := pitest.NewServer(pitest.Options{APIKey: testAPIKey, Network: piclient.NetworkTestnet})
	t.Cleanup(pi.Close)
	dir := t.TempDir()
	if opts.storage == "" {
		opts.storage = fileSystemStorage
	}
	c := &cluster{
		t: t, bin: bin, dir: dir, kind: opts.storage, store: newClusterStorage(t, opts.storage, dir), opts: opts, pi: pi,
		app: newClusterApp(t, clusterNames...),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 128, DisableCompression: true,
		}},
	}
	t.Cleanup(c.client.CloseIdleConnections)
	start := time.Now()
	for _, name := range clusterNames {
		c.procs = append(c.procs, c.start(name))
	}
	t.Logf("two Caddy processes up in %v (storage %s)", time.Since(start).Round(time.Millisecond), c.store)
	return c
}

func (c *cluster) caddyfile(p *caddyProc, httpsPort int) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	http_port %d
	https_port %d
	auto_https off
	skip_install_trust
	grace_period 1ns
	%s
}

http://127.0.0.1:%d {
	pi_guard {
		api_key {env.PI_GUARD_CLUSTER_API_KEY}
		api_url %s
		network "Pi Testnet"
		signing_key {env.PI_GUARD_CLUSTER_SIGNING_KEY}
		timeout %s
		redeliver_to %s
		redeliver_backoff 50ms
		redeliver_attempts 50
		lookup_rate_per_client 1000
		%s
	}
	reverse_proxy %s
}
`, p.adminPort, p.httpPort, httpsPort, c.store.option(), p.httpPort, c.pi.URL, c.opts.timeout,
		c.app.urls[viaRedeliver(p.name)], c.layout(), strings.TrimPrefix(c.app.urls[viaClient], "http://"))
}

// layout is the pi_guard subdirective that sets the record layout, if any.
func (c *cluster) layout() string {
	if c.kind == fileSystemFiles {
		return "record_layout files"
	}
	return ""
}

// start runs one `caddy run` and waits until it serves; a port taken between
// picking and binding it is retried with fresh ports.
func (c *cluster) start(name string) *caddyProc {
	c.t.Helper()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		p, err := c.tryStart(name, attempt)
		if err == nil {
			return p
		}
		lastErr = err
		c.t.Logf("starting caddy %s (attempt %d): %v", name, attempt, err)
	}
	c.t.Fatalf("could not start caddy %s: %v", name, lastErr)
	return nil
}

func (c *cluster) tryStart(name string, attempt int) (*caddyProc, error) {
	ports := freePorts(c.t, 3)
	p := &caddyProc{name: name, httpPort: ports[0], adminPort: ports[2], logs: &lockedBuffer{}, exited: make(chan struct{})}
	home := filepath.Join(c.dir, "home-"+name)
	file := filepath.Join(c.dir, fmt.Sprintf("Caddyfile-%s-%d", name, attempt))
	if err := os.WriteFile(file, []byte(c.caddyfile(p, ports[1])), 0o600); err != nil {
		return nil, err
	}
	p.cmd = exec.Command(c.bin, "run", "--config", file, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
		"PI_GUARD_CLUSTER_API_KEY="+testAPIKey,
		"PI_GUARD_CLUSTER_SIGNING_KEY="+testSigningKey,
	)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := waitServing(p, 20*time.Second); err != nil {
		p.kill(c.t)
		return nil, fmt.Errorf("%w\n--- caddy %s output ---\n%s", err, name, tail(p.logs.String(), 8000))
	}
	c.t.Cleanup(func() {
		p.kill(c.t)
		if c.t.Failed() {
			c.t.Logf("--- caddy %s (pid %d, http :%d, admin :%d) output ---\n%s", p.name, p.cmd.Process.Pid,
				p.httpPort, p.adminPort, tail(withoutAdminRequests(p.logs.String()), 60000))
		}
	})
	return p, nil
}

// waitServing polls the admin API and then the site until both answer.
func waitServing(p *caddyProc, within time.Duration) error {
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	check := func(url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	for _, url := range []string{fmt.Sprintf("http://127.0.0.1:%d/config/", p.adminPort), p.url("/cluster-health")} {
		for !check(url) {
			if !p.alive() {
				return fmt.Errorf("caddy %s exited before serving (%v)", p.name, p.waitErr)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("caddy %s: %s did not answer 200 within %v", p.name, url, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// freePorts returns n distinct free ports of 127.0.0.1, none of those the
// caddytest tests (admin 2999, HTTP 9080, HTTPS 9443) or a default Caddy
// (2019) use.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	reserved := map[int]bool{2019: true, 2999: true, 9080: true, 9443: true}
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		lns = append(lns, ln)
		if p := ln.Addr().(*net.TCPAddr).Port; !reserved[p] {
			ports = append(ports, p)
		}
	}
	return ports
}

// withoutAdminRequests drops the admin API's access log lines: the tests
// poll it, and its lines would bury what the guard logged.
func withoutAdminRequests(logs string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(logs, "\n") {
		if !strings.Contains(line, `"logger":"admin.api","msg":"received request"`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]\n" + s[len(s)-n:]
}

// ---------------------------------------------------------------------------
// Payments, through the cluster.

// submitted creates a payment at the fake Pi, approves it through proc and
// submits its transaction; it returns the payment id and txid.
func (c *cluster) submitted(approveVia *caddyProc) (string, string) {
	c.t.Helper()
	p := c.pi.CreatePayment(pitest.NewPayment{Amount: "2.5", Memo: "cluster"})
	status, body, err := c.post(approveVia, "/payments/approve", fmt.Sprintf(`{"paymentId":%q}`, p.Identifier))
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, status, "approve through caddy %s: %s", approveVia.name, body)
	// The wallet takes longer than the watch entry, which tells every
	// instance who the payer is, takes to be written (a second at most).
	c.waitWatched(p.Identifier)
	txid, err := c.pi.SubmitTransaction(p.Identifier)
	require.NoError(c.t, err)
	return p.Identifier, txid
}

// waitWatched waits until payment id's watch entry is in storage.
func (c *cluster) waitWatched(id string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(c.store.glob("pi_guard/*/watch/"+id+".json")) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("the watch entry of %s was not written within 5s", id)
}

// complete sends the app's complete callback for id through proc.
func (c *cluster) complete(proc *caddyProc, id, txid string) (int, string, error) {
	return c.post(proc, "/payments/complete", fmt.Sprintf(`{"paymentId":%q,"txid":%q}`, id, txid))
}

// completeRetrying is complete, sent again (at once, up to ten times) while
// the guard answers that the payment is busy (payment_busy, storage_busy:
// retryable, counted in c.busy).
func (c *cluster) completeRetrying(proc *caddyProc, id, txid string) (int, string, error) {
	for try := 1; ; try++ {
		status, body, err := c.complete(proc, id, txid)
		if err != nil || try == 10 || !c.busy.retryable(status, body) {
			return status, body, err
		}
	}
}

// checkNoBusyOnFiles asserts that, on file_system storage, no client was
// told the payment was busy: the guard's file locks are tried without
// waiting. A storage without TryLock that tries a held lock once a second
// makes requests wait past the lock wait.
func (c *cluster) checkNoBusyOnFiles() {
	c.t.Helper()
	if c.kind != netlikeStorage && c.busy.payment.Load()+c.busy.storage.Load() > 0 {
		c.t.Errorf("on file_system, clients were told to retry: %d payment_busy, %d storage_busy",
			c.busy.payment.Load(), c.busy.storage.Load())
	}
}

func (c *cluster) post(proc *caddyProc, path, body string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, proc.url(path), strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cluster-test-client")
	req.Header.Set("Cookie", payerCookie) // the payer's browser
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data), err
}

// ---------------------------------------------------------------------------
// What the shared storage says.

type storedRecord struct {
	PaymentID string `json:"payment_id"`
	Phase     string `json:"phase"`
	TxID      string `json:"txid"`
	Delivery  struct {
		State    string `json:"state"`
		Attempts int    `json:"attempts"`
	} `json:"delivery"`
}

// records reads every delivered payment record in the shared storage
// (pi_guard/<app>/payments/<id>.json, and in segments with file_system
// storage).
func (c *cluster) records() map[string]storedRecord {
	c.t.Helper()
	out := map[string]storedRecord{}
	for id, r := range segmentRecords(c.store) {
		if r.Delivery.State != "pending" && r.Delivery.State != "exhausted" {
			out[id] = r
		}
	}
	for _, k := range c.store.glob("pi_guard/*/payments/*.json") {
		data, err := c.store.load(k)
		if err != nil {
			continue // being replaced
		}
		var r storedRecord
		if json.Unmarshal(data, &r) == nil {
			out[r.PaymentID] = r
		}
	}
	return out
}

// owedMarkers lists the owed markers in the shared storage
// (pi_guard/<app>/owed/<id>.json, and owed records in segments). A
// temporary file beside them (*.tmp) is a write a killed instance never
// finished: not a record (nothing reads it), removed by the retention sweep
// once an hour old.
func (c *cluster) owedMarkers() []string {
	c.t.Helper()
	var ids []string
	for id, r := range segmentRecords(c.store) {
		if r.Delivery.State == "pending" || r.Delivery.State == "exhausted" {
			ids = append(ids, id+" (in a segment)")
		}
	}
	for _, k := range c.store.glob("pi_guard/*/owed/*.json") {
		ids = append(ids, path.Base(k))
	}
	return ids
}

// unsettled says what still keeps the ids from being delivered, or "" when
// every live instance's admin API lists nothing owed, no owed marker is left
// in storage and every id's record is delivered.
func (c *cluster) unsettled(ids []string) string {
	var why []string
	for _, p := range c.procs {
		if !p.alive() {
			continue
		}
		rows, err := p.deliveries()
		switch {
		case err != nil:
			why = append(why, err.Error())
		case len(rows) > 0:
			var owed []string
			for _, r := range rows {
				owed = append(owed, fmt.Sprintf("%v(%v, %v attempts, %v)", r["payment_id"], r["state"], r["attempts"], r["last_error"]))
			}
			why = append(why, fmt.Sprintf("admin API of %s lists %d owed: %s", p.name, len(rows), strings.Join(owed, " ")))
		}
	}
	if m := c.owedMarkers(); len(m) > 0 {
		why = append(why, fmt.Sprintf("owed markers in storage: %v", m))
	}
	recs := c.records()
	for _, id := range ids {
		if r, ok := recs[id]; !ok || r.Delivery.State != "delivered" {
			why = append(why, fmt.Sprintf("record of %s: %+v (present %t)", id, r, ok))
		}
	}
	return strings.Join(why, "; ")
}

// waitSettled polls until every id is delivered, or fails the test with what
// is still owed and what the app and Pi saw.
func (c *cluster) waitSettled(ids []string, within time.Duration) time.Duration {
	c.t.Helper()
	took, why := c.settle(ids, within)
	if why != "" {
		c.t.Fatalf("not every payment was delivered within %v: %s\n%s%s", within, why, c.report(ids), c.locks())
	}
	return took
}

// settle polls until every id is delivered and returns how long that took,
// or, after within, what is still owed.
func (c *cluster) settle(ids []string, within time.Duration) (time.Duration, string) {
	start := time.Now()
	deadline := start.Add(within)
	for {
		why := c.unsettled(ids)
		if why == "" || time.Now().After(deadline) {
			return time.Since(start), why
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// report describes, per payment, what Pi was asked and what the app received.
func (c *cluster) report(ids []string) string {
	var b strings.Builder
	recs := c.records()
	for _, id := range ids {
		r := recs[id]
		fmt.Fprintf(&b, "payment %s: Pi /complete calls %d (redundant %d); record phase=%q delivery=%q attempts=%d; app received (max %d redeliveries in flight):%s\n",
			id, c.pi.CallsFor(pitest.EndpointComplete, id), c.pi.RedundantCompletes(id), r.Phase, r.Delivery.State,
			r.Delivery.Attempts, c.app.maxRedeliveriesInFlight(id), c.app.timeline(id))
	}
	return b.String()
}

type lockFile struct {
	name             string
	created, updated time.Time
}

// lockFiles reads the storage lock files of file_system storage; none for
// another storage.
func (c *cluster) lockFiles() []lockFile {
	if fs, ok := c.store.(fileClusterStorage); ok {
		return fs.lockFiles()
	}
	return nil
}

// locks describes the storage locks held.
func (c *cluster) locks() string {
	held := c.store.locks(c.app.epoch)
	if len(held) == 0 {
		return "no storage lock is held"
	}
	return "storage locks held:\n    " + strings.Join(held, "\n    ")
}

// checkCompletedOnce asserts that Pi was asked to complete each id exactly once.
func (c *cluster) checkCompletedOnce(ids []string) {
	c.t.Helper()
	for _, id := range ids {
		if n, r := c.pi.CallsFor(pitest.EndpointComplete, id), c.pi.RedundantCompletes(id); n != 1 || r != 0 {
			c.t.Errorf("payment %s: Pi /complete was called %d times (%d after it was already completed); want exactly once\n%s",
				id, n, r, c.report([]string{id}))
		}
		if p, ok := c.pi.Payment(id); !ok || !p.Status.DeveloperCompleted {
			c.t.Errorf("payment %s is not completed at Pi", id)
		}
	}
}

// checkNoInvalidHeaders asserts that every verified header the app received
// verified.
func (c *cluster) checkNoInvalidHeaders() {
	c.t.Helper()
	for _, e := range c.app.allEvents() {
		if e.Err != "" {
			c.t.Errorf("the app received an invalid verified header for %s through %s: %s", e.ID, e.Via, e.Err)
		}
	}
}

// checkRedeliveries asserts, per id, that redeliveries never overlapped, that
// at most one of them was accepted, and that none followed an accepted one:
// only one instance redelivers a record at a time, and a delivered record is
// not redelivered.
func (c *cluster) checkRedeliveries(ids []string) {
	c.t.Helper()
	for _, id := range ids {
		if n := c.app.maxRedeliveriesInFlight(id); n > 1 {
			c.t.Errorf("payment %s: %d redeliveries were in flight at once; want at most 1\n%s", id, n, c.report([]string{id}))
		}
		var accepted *appEvent
		for _, e := range c.app.eventsFor(id) {
			if !e.redelivery() {
				continue
			}
			if accepted != nil && e.Start.After(accepted.End) {
				c.t.Errorf("payment %s was redelivered through %s after the app had accepted its redelivery through %s\n%s",
					id, e.Via, accepted.Via, c.report([]string{id}))
				break
			}
			if e.accepted() {
				e := e
				accepted = &e
			}
		}
	}
}
