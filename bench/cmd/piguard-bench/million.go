package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/bench/loadgen"
	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
)

// million drives n whole payment flows (the payments command's flow) at one
// concurrency against one guard site, and every k flows records Caddy's
// memory, the site's records on disk and the fake Pi's memory, to tell
// whether they stay bounded over a long run. It prints the table and a
// verdict at the end; each row also goes to standard error as it is taken.
func million(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("million", flag.ContinueOnError)
	guardURL := fs.String("guard", "http://127.0.0.1:18408", "base URL of the Caddy site with pi_guard")
	fakeURL := fs.String("fakepi", "http://127.0.0.1:18405", "base URL of the fake Pi platform")
	n := fs.Int("flows", 1_000_000, "whole payment flows to complete")
	conc := fs.Int("concurrency", 64, "concurrent flows")
	every := fs.Int("every", 50_000, "one row every this many flows")
	pid := fs.Int("pid", 0, "Caddy's process id: its RSS (VmRSS in /proc/<pid>/status)")
	piPID := fs.Int("pi-pid", 0, "the fake Pi's process id: its RSS")
	admin := fs.String("admin", "", "Caddy's admin URL: its Go heap in use, from the expvar memstats at /debug/vars")
	storage := fs.String("storage", "", "the site's storage root (file_system root): records are counted in <root>/pi_guard/*/log (segments), payments and owed")
	retention := fs.Duration("retention", 0, "the site's pi_guard retention, to tell how many records it allows (0: no such verdict)")
	sweep := fs.Duration("sweep-interval", time.Minute, "the pause between two retention sweeps (a minute in retention.go): a record may outlive retention by that much")
	span := fs.Duration("expiry-span", -1, "the span of the site's expiry files (internal/ledger/expiry.go): a record may outlive retention by that much more (default: as pi_guard derives it from -retention; 0 for storage without the expiry log)")
	warm := fs.Int("warmup-flows", 0, "the RSS verdict starts from the first row with at least this many flows (default: the first row)")
	maxErrors := fs.Int("max-errors", 1000, "stop after this many failed flows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || *conc <= 0 || *every <= 0 {
		return errors.New("-flows, -concurrency and -every must be positive")
	}
	if *span < 0 {
		*span = expirySpan(*retention)
	}
	m := &millionRun{
		n: *n, every: *every, conc: *conc, pid: *pid, piPID: *piPID, storage: *storage,
		admin: strings.TrimSuffix(*admin, "/"),
		f: &flower{
			guard:   strings.TrimSuffix(*guardURL, "/"),
			control: strings.TrimSuffix(*fakeURL, "/") + "/control",
			client:  loadgen.NewClient(*conc),
			ctl:     loadgen.NewClient(*conc),
		},
		adminClient: &http.Client{Timeout: 30 * time.Second},
		maxErrors:   *maxErrors,
		retention:   *retention,
		slack:       *span + *sweep,
	}
	// Fail early on a wrong pid or admin URL, not after the first k flows.
	if _, err := m.sample(ctx, 0, 0, 0); err != nil {
		return err
	}
	if err := m.f.setLatency(ctx, 0); err != nil {
		return err
	}
	rows, series, err := m.run(ctx)
	printMillion(out, rows, m, *retention, *sweep, *span)
	if len(rows) > 0 {
		fmt.Fprintf(out, "\n%s\n", millionVerdict(rows, series, *retention, m.slack, *warm))
	}
	return err
}

// millionRun is one run of the million command.
type millionRun struct {
	n, every, conc int
	pid, piPID     int
	storage, admin string
	f              *flower
	adminClient    *http.Client
	maxErrors      int
	retention      time.Duration // 0: records past retention are not counted
	// slack is how long past retention a record may stay before it is
	// overdue: one expiry span plus one sweep interval.
	slack time.Duration
	start time.Time
}

// millionRow is one row: the state after done flows.
type millionRow struct {
	done, errors    int
	at              time.Duration // since the start
	rate            float64       // flows/s since the previous row
	rss, heap       int64         // Caddy's RSS and Go heap in use; -1 when not measured
	payments, owed  dirUsage
	piRSS           int64
	measureDuration time.Duration // how long taking the row took (the walk of the directories)
}

// point is the flows done at one time, for the retention verdict.
type point struct {
	at   time.Duration
	done int
}

// run runs the flows, taking a row every m.every flows and at the end.
func (m *millionRun) run(ctx context.Context) ([]millionRow, []point, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var claimed, done, failed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	type trigger struct {
		done int
		at   time.Duration
	}
	triggers := make(chan trigger, m.n/m.every+2)
	m.start = time.Now()
	var wg sync.WaitGroup
	for range m.conc {
		wg.Go(func() {
			for ctx.Err() == nil && claimed.Add(1) <= int64(m.n) {
				var w worker
				if err := m.f.flow(ctx, &w); err != nil {
					claimed.Add(-1) // try that flow again
					errOnce.Do(func() { firstErr = err })
					if failed.Add(1) >= int64(m.maxErrors) {
						cancel()
					}
					continue
				}
				if d := int(done.Add(1)); d%m.every == 0 || d == m.n {
					triggers <- trigger{d, time.Since(m.start)}
				}
			}
		})
	}
	// The flows done each second, for the retention verdict.
	series := []point{{0, 0}}
	var seriesMu sync.Mutex
	tickDone := make(chan struct{})
	var tickWG sync.WaitGroup
	tickWG.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-tickDone:
				return
			case <-t.C:
				seriesMu.Lock()
				series = append(series, point{time.Since(m.start), int(done.Load())})
				seriesMu.Unlock()
			}
		}
	})
	go func() { wg.Wait(); close(triggers) }()

	var rows []millionRow
	prev := trigger{}
	var sampleErr error
	for tr := range triggers {
		if sampleErr != nil {
			continue
		}
		row, err := m.sample(ctx, tr.done, int(failed.Load()), tr.at)
		if err != nil {
			sampleErr = err
			cancel()
			continue
		}
		row.rate = float64(tr.done-prev.done) / (tr.at - prev.at).Seconds()
		prev = tr
		rows = append(rows, row)
		fmt.Fprintf(os.Stderr, "million: %d flows, %.1f/s, Caddy RSS %s MiB, heap %s MiB, %d + %d records, fake Pi RSS %s MiB (row taken in %s)\n",
			row.done, row.rate, mibOrDash(row.rss), mibOrDash(row.heap), row.payments.files, row.owed.files, mibOrDash(row.piRSS),
			row.measureDuration.Round(time.Millisecond))
	}
	close(tickDone)
	tickWG.Wait()
	seriesMu.Lock()
	series = append(series, point{time.Since(m.start), int(done.Load())})
	seriesMu.Unlock()
	switch {
	case sampleErr != nil:
		return rows, series, sampleErr
	case failed.Load() >= int64(m.maxErrors):
		return rows, series, fmt.Errorf("%d flows failed; the first: %w", failed.Load(), firstErr)
	case ctx.Err() != nil && int(done.Load()) < m.n:
		return rows, series, fmt.Errorf("stopped after %d flows: %w", done.Load(), context.Cause(ctx))
	}
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "million: %d flows failed and were run again; the first: %v\n", failed.Load(), firstErr)
	}
	return rows, series, nil
}

// sample takes one row's measurements.
func (m *millionRun) sample(ctx context.Context, done, errs int, at time.Duration) (millionRow, error) {
	t0 := time.Now()
	row := millionRow{done: done, errors: errs, at: at, rss: -1, heap: -1, piRSS: -1}
	var err error
	if m.pid != 0 {
		if row.rss, err = procRSS(m.pid); err != nil {
			return row, fmt.Errorf("-pid: %w", err)
		}
	}
	if m.piPID != 0 {
		if row.piRSS, err = procRSS(m.piPID); err != nil {
			return row, fmt.Errorf("-pi-pid: %w", err)
		}
	}
	if m.admin != "" {
		if row.heap, err = heapInUse(ctx, m.adminClient, m.admin); err != nil {
			return row, fmt.Errorf("-admin: %w", err)
		}
	}
	if m.storage != "" {
		var c cutoffs
		if m.retention > 0 {
			now := time.Now()
			c = cutoffs{expired: now.Add(-m.retention), overdue: now.Add(-m.retention - m.slack)}
		}
		if row.payments, row.owed, err = countRecords(m.storage, c); err != nil {
			return row, fmt.Errorf("-storage: %w", err)
		}
	}
	row.measureDuration = time.Since(t0)
	return row, nil
}

// heapInUse reads runtime.MemStats.HeapInuse from the expvar endpoint of
// Caddy's admin API (/debug/vars).
func heapInUse(ctx context.Context, c *http.Client, admin string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/vars", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /debug/vars: %s", resp.Status)
	}
	var v struct {
		Memstats *struct {
			HeapInuse int64
		} `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, fmt.Errorf("GET /debug/vars: %w", err)
	}
	if v.Memstats == nil {
		return 0, errors.New("GET /debug/vars: no memstats")
	}
	return v.Memstats.HeapInuse, nil
}

// dirUsage is what one records directory holds.
type dirUsage struct {
	files int   // records (*.json)
	bytes int64 // allocated on disk (st_blocks), every entry and the directory itself, as du counts
	// expired and overdue are the records last written before the
	// cutoffs' expired and overdue times.
	expired, overdue int
}

func (d dirUsage) add(o dirUsage) dirUsage {
	return dirUsage{d.files + o.files, d.bytes + o.bytes, d.expired + o.expired, d.overdue + o.overdue}
}

// cutoffs are the times before which a record counts as expired (older than
// retention) and overdue (older than retention plus the slack, one expiry
// span and one sweep interval: the sweep should have removed it). Zero
// times count nothing.
type cutoffs struct{ expired, overdue time.Time }

// countRecords counts the records under root/pi_guard/*/payments and
// root/pi_guard/*/owed (one prefix per API key), and those in the segments
// of root/pi_guard/*/log (each payment's current record, delivered or
// owed; their segments' space counts as the delivered records'). A
// directory not made yet counts as empty.
func countRecords(root string, c cutoffs) (payments, owed dirUsage, err error) {
	prefixes, err := filepath.Glob(filepath.Join(root, "pi_guard", "*"))
	if err != nil {
		return payments, owed, err
	}
	for _, p := range prefixes {
		delivered, owing, err := countSegments(filepath.Join(p, "log"), c)
		if err != nil {
			return payments, owed, err
		}
		payments, owed = payments.add(delivered), owed.add(owing)
		u, err := countDir(filepath.Join(p, "payments"), c)
		if err != nil {
			return payments, owed, err
		}
		payments = payments.add(u)
		if u, err = countDir(filepath.Join(p, "owed"), c); err != nil {
			return payments, owed, err
		}
		owed = owed.add(u)
	}
	return payments, owed, nil
}

// countDir reads one directory in chunks (it may hold a million entries).
// Entries removed while it reads (retention, delivery) are skipped.
func countDir(dir string, c cutoffs) (dirUsage, error) {
	var u dirUsage
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	defer d.Close()
	if st, err := d.Stat(); err == nil {
		u.bytes += blocks(st)
	}
	for {
		entries, err := d.ReadDir(4096)
		for _, e := range entries {
			record := strings.HasSuffix(e.Name(), ".json")
			if record {
				u.files++
			}
			info, err := e.Info()
			if err != nil {
				continue
			}
			u.bytes += blocks(info)
			if record && info.ModTime().Before(c.expired) {
				u.expired++
			}
			if record && info.ModTime().Before(c.overdue) {
				u.overdue++
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && len(entries) == 0) {
			return u, nil
		}
		if err != nil {
			return u, err
		}
	}
}

// countSegments counts the current records in the segments of dir: for
// each payment its line of the highest version (a later segment's on a
// tie), by its delivery state; a record's age is its "updated" time.
// Segments removed while it reads (compacted) are skipped: their records
// are in newer ones, read after them.
func countSegments(dir string, c cutoffs) (delivered, owed dirUsage, err error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return delivered, owed, err
	}
	type current struct {
		version uint64
		owed    bool
		updated time.Time
	}
	recs := map[string]current{}
	for _, name := range names { // sorted: in the order they were made
		data, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return delivered, owed, err
		}
		if info, err := os.Stat(name); err == nil {
			delivered.bytes += blocks(info)
		}
		lines, _ := seglog.Scan(data)
		for _, line := range lines {
			var r struct {
				PaymentID string    `json:"payment_id"`
				Version   uint64    `json:"version"`
				Updated   time.Time `json:"updated"`
				Delivery  struct {
					State string `json:"state"`
				} `json:"delivery"`
			}
			if json.Unmarshal(line, &r) != nil || r.PaymentID == "" {
				continue
			}
			if have, ok := recs[r.PaymentID]; !ok || r.Version >= have.version {
				recs[r.PaymentID] = current{r.Version, r.Delivery.State == "pending" || r.Delivery.State == "exhausted", r.Updated}
			}
		}
	}
	for _, r := range recs {
		u := &delivered
		if r.owed {
			u = &owed
		}
		u.files++
		if r.updated.Before(c.expired) {
			u.expired++
		}
		if r.updated.Before(c.overdue) {
			u.overdue++
		}
	}
	return delivered, owed, nil
}

// blocks is the space a file takes on disk: st_blocks × 512.
func blocks(info os.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

func mibOrDash(b int64) string {
	if b < 0 {
		return "–"
	}
	return mib(b)
}

// printMillion prints the rows as one table.
func printMillion(out io.Writer, rows []millionRow, m *millionRun, retention, sweep, span time.Duration) {
	fmt.Fprintf(out, "### %d payment flows at %d in flight\n\n", m.n, m.conc)
	fmt.Fprintf(out, "The payments benchmark's flow, repeated against one guard site. One row every %d flows. "+
		"`flows/s` is over the rows' interval. `RSS` is VmRSS from /proc/<pid>/status. "+
		"`heap` is Caddy's Go heap in use (HeapInuse, from /debug/vars on its admin API). "+
		"Records are each payment's current record in the site's segments (log/*.seg), delivered (counted as payments/ records) or owed, "+
		"and the *.json files in its payments/ and owed/ directories; "+
		"`on disk` is their allocated blocks (segments whole), directories included, as du counts them. "+
		"They are counted while the flows go on, so a row may show a few more records than flows done.", m.every)
	if retention > 0 {
		fmt.Fprintf(out, " The site's retention is %s; its sweep runs every %s", retention, sweep)
		if span > 0 {
			fmt.Fprintf(out, " and removes the records of an expiry file (one per %s) once the file's span is past retention", span)
		}
		fmt.Fprintf(out, ". `past retention` counts the payments/ records delivered more than %s ago, which the sweep has yet to remove.", retention)
	}
	fmt.Fprint(out, "\n\n")
	var tab [][]string
	for _, r := range rows {
		expired := "–"
		if retention > 0 {
			expired = fmt.Sprint(r.payments.expired)
		}
		tab = append(tab, []string{
			fmt.Sprint(r.done), fmt.Sprint(r.errors), fmt.Sprintf("%.0f", r.at.Seconds()), fmt.Sprintf("%.1f", r.rate),
			mibOrDash(r.rss), mibOrDash(r.heap),
			fmt.Sprint(r.payments.files), expired, fmt.Sprint(r.owed.files), mib(r.payments.bytes + r.owed.bytes),
			mibOrDash(r.piRSS),
		})
	}
	fmt.Fprint(out, loadgen.Table([]string{"flows done", "errors", "time s", "flows/s", "Caddy RSS MiB", "Caddy heap MiB",
		"payments/ records", "past retention", "owed/ records", "on disk MiB", "fake Pi RSS MiB"}, tab))
}

// doneAt is the flows done at time at, interpolated between the points
// (sorted by time; none before the first).
func doneAt(series []point, at time.Duration) float64 {
	if len(series) == 0 || at <= series[0].at {
		return 0
	}
	for i := 1; i < len(series); i++ {
		a, b := series[i-1], series[i]
		if at <= b.at {
			if b.at == a.at {
				return float64(b.done)
			}
			frac := float64(at-a.at) / float64(b.at-a.at)
			return float64(a.done) + frac*float64(b.done-a.done)
		}
	}
	return float64(series[len(series)-1].done)
}

// millionVerdict says how Caddy's RSS moved from the first row after the
// warm-up to the last, and how the records left on disk compare with what
// retention allows: the flows of the last retention + slack (one expiry
// span and one sweep interval).
func millionVerdict(rows []millionRow, series []point, retention, slack time.Duration, warm int) string {
	first := rows[0]
	for _, r := range rows {
		if r.done >= warm {
			first = r
			break
		}
	}
	last := rows[len(rows)-1]
	var b strings.Builder
	b.WriteString("Verdict: ")
	if first.rss >= 0 && last.rss >= 0 {
		grow := last.rss - first.rss
		fmt.Fprintf(&b, "Caddy's RSS was %s MiB after %d flows and %s MiB after %d (%+.1f MiB, %+.0f%%). ",
			mib(first.rss), first.done, mib(last.rss), last.done, float64(grow)/(1<<20), 100*float64(grow)/float64(max(first.rss, 1)))
	}
	records := last.payments.files + last.owed.files
	fmt.Fprintf(&b, "%d records on disk at the end (%s MiB).", records, mib(last.payments.bytes+last.owed.bytes))
	if retention <= 0 || len(series) == 0 {
		return b.String()
	}
	end := series[len(series)-1]
	window := retention + slack
	allowed := int(float64(end.done) - doneAt(series, end.at-window) + 0.5)
	fmt.Fprintf(&b, " Retention %s plus %s (an expiry span and a sweep interval) allows about %d, the flows of the last %s.", retention, slack, allowed, window)
	switch o := last.payments.overdue; {
	case end.at < window:
		fmt.Fprintf(&b, " The run lasted %s, less than that: it cannot show whether the sweep keeps up.", end.at.Round(time.Second))
	case o == 0:
		fmt.Fprintf(&b, " No record is older than that: the sweep keeps up.")
	default:
		fmt.Fprintf(&b, " %d records are older than that: the sweep is not keeping up.", o)
	}
	return b.String()
}

// expirySpan is the span of pi_guard's expiry files for a retention, as
// internal/ledger/expiry.go derives it: a quarter of it, between a minute and an hour, in
// whole seconds.
func expirySpan(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Minute), time.Hour).Truncate(time.Second)
}
