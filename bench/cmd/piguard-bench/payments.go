package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/guardlog"
	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
)

// flowRun is what one payment-flow run (one Pi latency, one concurrency)
// measured.
type flowRun struct {
	latencyMS   int
	conc        int
	res         *loadgen.Result
	approve     loadgen.Samples // client latency of approve requests
	complete    loadgen.Samples // client latency of complete requests
	phases      map[string]*phaseSteps
	steps       int
	stepsWanted int
	calls       map[string]int // Pi API calls during the run, per endpoint
	loggedCalls int            // Pi calls the guard logged for the run's payments
	cpu         time.Duration  // CPU time of the server process (-pid) during the run
	appCPU      time.Duration  // CPU time of the app behind it (-app-pid)
	piCPU       time.Duration  // CPU time of the fake Pi (-pi-pid)
	genCPU      time.Duration  // CPU time of this process, the load generator
	rssMax      int64          // the server's highest RSS during the run
}

// phaseSteps is what the guard logged for one phase's requests of a run.
type phaseSteps struct {
	added        loadgen.Samples // the guard's own time (guardlog.Step.Added)
	totalMinusPi loadgen.Samples // the whole request minus Pi: guard + app
	pi           loadgen.Samples
	negative     int  // steps whose Added was negative: Pi called after forwarding
	exact        bool // the upstream's time was logged
}

// payments runs payment flows through the guard against the fake Pi at each
// Pi latency and concurrency, and prints the tables.
func payments(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("payments", flag.ContinueOnError)
	guardURL := fs.String("guard", "http://127.0.0.1:18401", "base URL of the Caddy site with pi_guard (default routes /payments/approve and /payments/complete)")
	fakeURL := fs.String("fakepi", "http://127.0.0.1:18405", "base URL of the fake Pi platform (its control API is under /control)")
	logPath := fs.String("log", "", "Caddy's JSON log file, where the guard logs one line per payment request (without it, no guard-added times: for a server that is not the guard)")
	concList := fs.String("concurrency", "1,16,64", "concurrent flows, comma-separated")
	latList := fs.String("latency", "0,50", "latency added to every Pi API call, in ms, comma-separated")
	dur := fs.Duration("duration", 8*time.Second, "length of each run (flows in flight at the end finish)")
	warmup := fs.Duration("warmup", time.Second, "warm-up at the highest concurrency before the runs of each latency")
	admin := fs.String("admin", "", "Caddy's admin URL; with -profile-dir, a CPU profile and an allocation profile are taken during each run")
	profDir := fs.String("profile-dir", "", "directory for the profiles (needs -admin)")
	title := fs.String("title", "", "added to the tables' headings, to tell setups apart")
	pid := fs.Int("pid", 0, "the server's process id: its CPU time per flow (from /proc) and its RSS are measured")
	appPID := fs.Int("app-pid", 0, "the process id of the app behind the server, whose CPU time per flow is reported apart")
	piPID := fs.Int("pi-pid", 0, "the fake Pi's process id, whose CPU time per flow is reported apart (the load generator's own is always measured)")
	summaryPath := fs.String("summary", "", "write the runs' figures as JSON to this file, for the compare command")
	name := fs.String("name", "", "the setup's name in the summary")
	plain := fs.Bool("plain", false, "the server is reverse_proxy alone in front of the app: each flow posts its two requests, "+
		"the same as against the guard but with a made-up payment id and txid, and the fake Pi is not used "+
		"(what proxying a flow's two requests costs Caddy; -latency must be 0)")
	cookieless := fs.Bool("cookieless", false, "post without a session cookie (by default each flow's two posts carry one of its own, "+
		"as the reference app's browser sends its session cookie: without one, the guard cannot tell the payer from a stranger)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	concs, err := intList(*concList)
	if err != nil {
		return fmt.Errorf("-concurrency: %w", err)
	}
	lats, err := intList(*latList)
	if err != nil {
		return fmt.Errorf("-latency: %w", err)
	}
	if (*profDir == "") != (*admin == "") {
		return errors.New("-profile-dir and -admin go together")
	}
	if *plain && slices.ContainsFunc(lats, func(l int) bool { return l != 0 }) {
		return errors.New("-plain: the fake Pi is not used, so -latency must be 0")
	}
	maxConc := slices.Max(concs)
	f := &flower{
		plain:   *plain,
		session: !*cookieless,
		guard:   strings.TrimSuffix(*guardURL, "/"),
		control: strings.TrimSuffix(*fakeURL, "/") + "/control",
		client:  loadgen.NewClient(maxConc),
		ctl:     loadgen.NewClient(maxConc),
	}
	var logOff int64
	if *logPath != "" {
		if _, logOff, err = guardlog.ReadFrom(*logPath, 0); err != nil {
			return fmt.Errorf("reading the Caddy log: %w", err)
		}
	}
	var idleRSS int64
	if *pid != 0 {
		if idleRSS, err = procRSS(*pid); err != nil {
			return fmt.Errorf("-pid: %w", err)
		}
	}

	if *piPID != 0 {
		if _, err := procCPU(*piPID); err != nil {
			return fmt.Errorf("-pi-pid: %w", err)
		}
	}

	var runs []*flowRun
	for _, lat := range lats {
		if err := f.setLatency(ctx, lat); err != nil {
			return err
		}
		if res, _ := f.run(ctx, maxConc, *warmup); res.Ops == 0 {
			return fmt.Errorf("warm-up at %d ms: no flow succeeded: %v", lat, res.FirstErr)
		}
		for _, conc := range concs {
			if *logPath != "" {
				if _, logOff, err = guardlog.ReadFrom(*logPath, logOff); err != nil { // skip what came before
					return err
				}
			}
			before, err := f.calls(ctx)
			if err != nil {
				return err
			}
			var prof *profiler
			if *profDir != "" {
				prof, err = startProfile(ctx, *admin, *profDir, fmt.Sprintf("%dms-%d", lat, conc), *dur)
				if err != nil {
					return err
				}
			}
			pu := startUsage(ctx, *pid, *appPID, *piPID)
			res, w := f.run(ctx, conc, *dur)
			use, err := pu.finish()
			if err != nil {
				return err
			}
			if prof != nil {
				if err := prof.finish(ctx); err != nil {
					return err
				}
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			after, err := f.calls(ctx)
			if err != nil {
				return err
			}
			r := &flowRun{latencyMS: lat, conc: conc, res: res, calls: map[string]int{}, phases: map[string]*phaseSteps{},
				cpu: use.cpu, appCPU: use.appCPU, piCPU: use.piCPU, genCPU: use.selfCPU, rssMax: use.rssMax}
			for ep, n := range after {
				if d := n - before[ep]; d != 0 {
					r.calls[ep] = d
				}
			}
			ids := map[string]bool{}
			for i := range w {
				r.approve.Merge(&w[i].approve)
				r.complete.Merge(&w[i].complete)
				for _, id := range w[i].ids {
					ids[id] = true
				}
			}
			if *logPath != "" {
				r.stepsWanted = r.approve.Len() + r.complete.Len()
				if logOff, err = r.readSteps(*logPath, logOff, ids); err != nil {
					return err
				}
			}
			runs = append(runs, r)
			fmt.Fprintf(os.Stderr, "payments: %d ms Pi latency, %d flows in flight: %d flows (%.1f/s), %d errors\n",
				lat, conc, res.Ops, res.Rate(), res.Errors)
		}
	}
	if err := f.setLatency(ctx, 0); err != nil {
		return err
	}
	printFlowTables(out, runs, *dur, *title, *logPath != "", *pid != 0 || *piPID != 0)
	if *summaryPath != "" {
		return writeSummary(*summaryPath, *name, idleRSS, runs)
	}
	return nil
}

// readSteps collects the guard's log lines for the run's payments, waiting a
// little for the last ones to reach the file.
func (r *flowRun) readSteps(path string, off int64, ids map[string]bool) (int64, error) {
	deadline := time.Now().Add(3 * time.Second)
	for {
		steps, next, err := guardlog.ReadFrom(path, off)
		if err != nil {
			return off, err
		}
		off = next
		for _, s := range steps {
			if !ids[s.PaymentID] {
				continue
			}
			r.steps++
			r.loggedCalls += s.PiCalls
			ps := r.phases[s.Phase]
			if ps == nil {
				ps = &phaseSteps{exact: true}
				r.phases[s.Phase] = ps
			}
			ps.added.Add(s.Added())
			ps.totalMinusPi.Add(s.TotalMinusPi())
			ps.pi.Add(s.PiLatency)
			if s.Added() < 0 {
				ps.negative++
			}
			ps.exact = ps.exact && s.HasUpstream && s.HasTotal
		}
		if r.steps >= r.stepsWanted || time.Now().After(deadline) {
			return off, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flower runs payment flows.
type flower struct {
	guard, control string
	client, ctl    *http.Client // to Caddy, to the fake's control API
	plain          bool         // the server is reverse_proxy alone: no fake Pi
	session        bool         // each flow's posts carry a session cookie of its own
}

// worker is one flow worker's own measurements.
type worker struct {
	approve, complete loadgen.Samples
	ids               []string
}

// run runs flows with conc workers for d.
func (f *flower) run(ctx context.Context, conc int, d time.Duration) (*loadgen.Result, []worker) {
	w := make([]worker, conc)
	res := loadgen.Run(ctx, conc, d, func(ctx context.Context, i int) error {
		return f.flow(ctx, &w[i])
	})
	return res, w
}

// flow is one payment: created at the fake (not timed), approved through
// Caddy (timed), paid by the user's wallet at the fake (not timed), completed
// through Caddy (timed).
func (f *flower) flow(ctx context.Context, w *worker) error {
	if f.plain {
		return f.plainFlow(ctx, w)
	}
	var p struct {
		Identifier string `json:"identifier"`
	}
	if err := f.ctlPost(ctx, "/payments", `{"amount":"1","memo":"benchmark"}`, http.StatusCreated, &p); err != nil {
		return err
	}
	w.ids = append(w.ids, p.Identifier)
	cookie := f.sessionCookie()
	t0 := time.Now()
	if err := f.guardPost(ctx, "/payments/approve", cookie, fmt.Sprintf(`{"paymentId":%q}`, p.Identifier)); err != nil {
		return err
	}
	w.approve.Add(time.Since(t0))
	var paid struct {
		Transaction struct {
			TxID string `json:"txid"`
		} `json:"transaction"`
	}
	if err := f.ctlPost(ctx, "/payments/"+p.Identifier+"/submit", "", http.StatusOK, &paid); err != nil {
		return err
	}
	t0 = time.Now()
	if err := f.guardPost(ctx, "/payments/complete", cookie, fmt.Sprintf(`{"paymentId":%q,"txid":%q}`, p.Identifier, paid.Transaction.TxID)); err != nil {
		return err
	}
	w.complete.Add(time.Since(t0))
	return nil
}

// plainFlow is a flow's two requests, exactly as flow posts them, with a
// made-up payment id and txid: for reverse_proxy alone, which forwards them
// to the app without asking anyone.
func (f *flower) plainFlow(ctx context.Context, w *worker) error {
	var b [44]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:21])
	txid := hex.EncodeToString(b[12:44])
	cookie := f.sessionCookie()
	t0 := time.Now()
	if err := f.guardPost(ctx, "/payments/approve", cookie, fmt.Sprintf(`{"paymentId":%q}`, id)); err != nil {
		return err
	}
	w.approve.Add(time.Since(t0))
	t0 = time.Now()
	if err := f.guardPost(ctx, "/payments/complete", cookie, fmt.Sprintf(`{"paymentId":%q,"txid":%q}`, id, txid)); err != nil {
		return err
	}
	w.complete.Add(time.Since(t0))
	w.ids = append(w.ids, id)
	return nil
}

// sessionCookie is a new flow's session cookie, as an express-session
// cookie looks (the reference app's backend), or "" without sessions.
func (f *flower) sessionCookie() string {
	if !f.session {
		return ""
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "connect.sid=s%3A" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (f *flower) guardPost(ctx context.Context, path, cookie, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.guard+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		drain(resp)
		return fmt.Errorf("POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	drain(resp)
	return nil
}

func (f *flower) ctlPost(ctx context.Context, path, body string, want int, v any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.control+path, rd)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.ctl.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("fake Pi POST /control%s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (f *flower) setLatency(ctx context.Context, ms int) error {
	if f.plain {
		return nil
	}
	return f.ctlPost(ctx, "/latency", fmt.Sprintf(`{"latency_ms":%d}`, ms), http.StatusOK, nil)
}

// calls reads the fake's per-endpoint call counters.
func (f *flower) calls(ctx context.Context) (map[string]int, error) {
	if f.plain {
		return map[string]int{}, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.control+"/calls", nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.ctl.Do(req)
	if err != nil {
		return nil, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fake Pi GET /control/calls: %s", resp.Status)
	}
	m := map[string]int{}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// profiler takes a CPU profile of Caddy over a run, and allocation profiles
// before and after it (their difference is the run's allocations).
type profiler struct {
	admin, dir, name string
	cpu              chan error
}

func startProfile(ctx context.Context, admin, dir, name string, d time.Duration) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &profiler{admin: strings.TrimSuffix(admin, "/"), dir: dir, name: name, cpu: make(chan error, 1)}
	if err := p.fetch(ctx, "/debug/pprof/allocs", "allocs-before-"+name+".pprof"); err != nil {
		return nil, err
	}
	secs := max(1, int(d.Seconds())-1)
	go func() {
		p.cpu <- p.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "cpu-"+name+".pprof")
	}()
	return p, nil
}

func (p *profiler) finish(ctx context.Context) error {
	if err := <-p.cpu; err != nil {
		return err
	}
	return p.fetch(ctx, "/debug/pprof/allocs", "allocs-after-"+p.name+".pprof")
}

func (p *profiler) fetch(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.admin+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, file), data, 0o644)
}

// printFlowTables prints the payment-flow tables.
func printFlowTables(out io.Writer, runs []*flowRun, dur time.Duration, title string, guardLog, usage bool) {
	if title != "" {
		title = ", " + title
	}
	fmt.Fprintf(out, "### Payment flows%s\n\n", title)
	fmt.Fprintf(out, "Each flow: create the payment at the fake Pi (control API, not timed), POST /payments/approve through the server, "+
		"submit the transaction at the fake (not timed), POST /payments/complete through the server. Runs of %s per row; "+
		"flows/s counts whole flows, control calls included. Latencies are as the client sees them, in ms.", dur)
	header := []string{"Pi latency ms", "flows in flight", "flows", "errors", "flows/s",
		"approve p50", "approve p99", "complete p50", "complete p99"}
	if usage {
		fmt.Fprintf(out, " `CPU/flow`: the server process's user + system time (/proc/<pid>/stat) over the run, divided by its flows; "+
			"`app CPU/flow` the same for the app behind it, `Pi CPU/flow` for the fake Pi, `loadgen CPU/flow` for the load generator itself (getrusage); "+
			"`RSS max`: the server's highest resident set size, sampled every 100 ms.")
		header = append(header, "CPU/flow ms", "app CPU/flow ms", "Pi CPU/flow ms", "loadgen CPU/flow ms", "RSS max MiB")
	}
	fmt.Fprint(out, "\n\n")
	var rows [][]string
	for _, r := range runs {
		row := []string{
			fmt.Sprint(r.latencyMS), fmt.Sprint(r.conc), fmt.Sprint(r.res.Ops), fmt.Sprint(r.res.Errors),
			fmt.Sprintf("%.1f", r.res.Rate()),
			loadgen.Ms(r.approve.Quantile(0.5)), loadgen.Ms(r.approve.Quantile(0.99)),
			loadgen.Ms(r.complete.Quantile(0.5)), loadgen.Ms(r.complete.Quantile(0.99)),
		}
		if usage {
			orDash := func(total, per time.Duration) string {
				if total <= 0 {
					return "–"
				}
				return loadgen.Ms(per)
			}
			row = append(row, loadgen.Ms(r.cpuPerFlow()), orDash(r.appCPU, r.appCPUPerFlow()),
				orDash(r.piCPU, r.piCPUPerFlow()), loadgen.Ms(r.genCPUPerFlow()), mib(r.rssMax))
		}
		rows = append(rows, row)
	}
	fmt.Fprint(out, loadgen.Table(header, rows))
	for _, r := range runs {
		if r.res.Errors > 0 {
			fmt.Fprintf(out, "\n%d ms, %d flows: first error: %v\n", r.latencyMS, r.conc, r.res.FirstErr)
		}
	}
	if !guardLog {
		return
	}

	fmt.Fprintf(out, "\n### Time the guard adds%s\n\n", title)
	fmt.Fprintf(out, "From the guard's own log line per request (logger `%s`, msg %q), in ms, per phase. "+
		"`guard` is the time the guard itself adds on top of Pi's: `total − pi_latency − upstream` when the line has an `upstream` field, "+
		"otherwise `duration − pi_latency` (`duration`: the guard's start until it forwards; exact only when every Pi call comes before forwarding). "+
		"`guard+app` is `total − pi_latency`: the guard and the app together, an upper bound of `guard`. "+
		"`Pi` is the time in Pi calls per request.\n\n", guardlog.Logger, guardlog.Message)
	// A phase whose duration − pi_latency came out negative in any run calls
	// Pi after forwarding (with 50 ms per call this shows in every step), so
	// that measure is not the guard's time in any of its runs.
	invalidPhase := map[string]bool{}
	var invalid []string
	for _, r := range runs {
		for phase, ps := range r.phases {
			if ps.negative > 0 {
				invalidPhase[phase] = true
				invalid = append(invalid, fmt.Sprintf("%s at %d ms/%d flows: %d of %d", phase, r.latencyMS, r.conc, ps.negative, ps.added.Len()))
			}
		}
	}
	slices.Sort(invalid)
	rows = nil
	var misses []string
	for _, r := range runs {
		for _, phase := range sortedPhases(r.phases) {
			ps := r.phases[phase]
			valid := !invalidPhase[phase]
			g50, g99, gmax := loadgen.Ms(ps.added.Quantile(0.5)), loadgen.Ms(ps.added.Quantile(0.99)), loadgen.Ms(ps.added.Max())
			if !valid {
				g50, g99, gmax = "n/a", "n/a", "n/a"
			}
			measure := "duration−pi"
			if ps.exact {
				measure = "total−pi−upstream"
			}
			rows = append(rows, []string{
				fmt.Sprint(r.latencyMS), fmt.Sprint(r.conc), phase, fmt.Sprint(ps.added.Len()), measure,
				g50, g99, gmax,
				loadgen.Ms(ps.totalMinusPi.Quantile(0.5)), loadgen.Ms(ps.totalMinusPi.Quantile(0.99)),
				loadgen.Ms(ps.pi.Quantile(0.5)), loadgen.Ms(ps.pi.Quantile(0.99)),
			})
			if r.conc >= 64 {
				p99, what := ps.added.Quantile(0.99), "guard"
				if !valid {
					p99, what = ps.totalMinusPi.Quantile(0.99), "guard+app (upper bound)"
				}
				if p99 >= 2*time.Millisecond {
					misses = append(misses, fmt.Sprintf("%s at %d ms: %s p99 %s ms", phase, r.latencyMS, what, loadgen.Ms(p99)))
				}
			}
		}
		if r.steps < r.stepsWanted {
			fmt.Fprintf(os.Stderr, "payments: %d ms, %d flows: only %d of %d guard log lines found\n", r.latencyMS, r.conc, r.steps, r.stepsWanted)
		}
	}
	fmt.Fprint(out, loadgen.Table([]string{"Pi latency ms", "flows in flight", "phase", "steps", "guard measured as",
		"guard p50", "guard p99", "guard max", "guard+app p50", "guard+app p99", "Pi p50", "Pi p99"}, rows))
	if len(invalid) > 0 {
		fmt.Fprintf(out, "\nn/a: `duration − pi_latency` came out negative (steps: %s), so this phase calls Pi after the guard forwarded, "+
			"and its log line cannot separate the guard's time from the app's without an `upstream` field; `guard+app` bounds it.\n",
			strings.Join(invalid, "; "))
	}
	if len(misses) == 0 {
		fmt.Fprintf(out, "\nTarget guard-added p99 < 2 ms at 64 flows: met.\n")
	} else {
		fmt.Fprintf(out, "\nTarget guard-added p99 < 2 ms at 64 flows: **MISSED** (%s).\n", strings.Join(misses, "; "))
	}

	fmt.Fprintf(out, "\n### Pi API calls per payment%s\n\n", title)
	fmt.Fprintf(out, "From the fake Pi's per-endpoint counters (GET /control/calls) before and after each run, divided by the flows completed; "+
		"`logged` is the guard's own count (`pi_calls`) for the same payments.\n\n")
	rows = nil
	worst := 0.0
	for _, r := range runs {
		total := 0
		var parts []string
		eps := make([]string, 0, len(r.calls))
		for ep := range r.calls {
			eps = append(eps, ep)
		}
		slices.Sort(eps)
		for _, ep := range eps {
			total += r.calls[ep]
			parts = append(parts, fmt.Sprintf("%s %.2f", ep, per(r.calls[ep], r.res.Ops)))
		}
		worst = max(worst, per(total, r.res.Ops))
		rows = append(rows, []string{
			fmt.Sprint(r.latencyMS), fmt.Sprint(r.conc), fmt.Sprint(r.res.Ops),
			fmt.Sprintf("%.2f", per(total, r.res.Ops)), fmt.Sprintf("%.2f", per(r.loggedCalls, r.res.Ops)), strings.Join(parts, ", "),
		})
	}
	fmt.Fprint(out, loadgen.Table([]string{"Pi latency ms", "flows in flight", "flows", "calls/payment", "logged", "per endpoint"}, rows))
	verdict := "met"
	if worst > 3 {
		verdict = "**MISSED**"
	}
	fmt.Fprintf(out, "\nTarget ≤ 3 Pi calls per payment: %s (worst %.2f).\n", verdict, worst)
}

func per(n, flows int) float64 {
	if flows == 0 {
		return 0
	}
	return float64(n) / float64(flows)
}

// sortedPhases lists the phases in flow order (approve, complete), others
// after them by name.
func sortedPhases(m map[string]*phaseSteps) []string {
	order := map[string]int{"approve": 0, "complete": 1}
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b string) int {
		oa, ok := order[a]
		if !ok {
			oa = 2
		}
		ob, ok := order[b]
		if !ok {
			ob = 2
		}
		if oa != ob {
			return oa - ob
		}
		return strings.Compare(a, b)
	})
	return out
}
