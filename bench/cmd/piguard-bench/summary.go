package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
)

// procUsage measures, over one run, the CPU time of the server, the app
// behind it, the fake Pi and the load generator itself, and the server's
// highest RSS.
type procUsage struct {
	pid, appPID, piPID    int // 0: not measured
	cpu0, appCPU0, piCPU0 time.Duration
	selfCPU0              time.Duration
	rss                   *rssSampler
	err                   error
}

// procTimes is what a procUsage measured.
type procTimes struct {
	cpu, appCPU, piCPU time.Duration // server, app, fake Pi
	selfCPU            time.Duration // this process: the load generator
	rssMax             int64         // the server's
}

// startUsage starts measuring; a pid of 0 is not measured. The load
// generator's own CPU time is always measured.
func startUsage(ctx context.Context, pid, appPID, piPID int) *procUsage {
	u := &procUsage{pid: pid, appPID: appPID, piPID: piPID}
	var errs []error
	start := func(pid int) time.Duration {
		if pid == 0 {
			return 0
		}
		c, err := procCPU(pid)
		errs = append(errs, err)
		return c
	}
	u.cpu0, u.appCPU0, u.piCPU0 = start(pid), start(appPID), start(piPID)
	var err error
	u.selfCPU0, err = selfCPU()
	u.err = errors.Join(append(errs, err)...)
	if pid != 0 {
		u.rss = sampleRSS(ctx, pid, 100*time.Millisecond)
	}
	return u
}

// finish returns what each process used since the start, and the server's
// highest RSS.
func (u *procUsage) finish() (procTimes, error) {
	var got procTimes
	self, selfErr := selfCPU()
	var rssErr error
	if u.rss != nil {
		got.rssMax, rssErr = u.rss.finish()
	}
	errs := []error{u.err, selfErr, rssErr}
	since := func(pid int, c0 time.Duration) time.Duration {
		if pid == 0 {
			return 0
		}
		c, err := procCPU(pid)
		errs = append(errs, err)
		return c - c0
	}
	got.cpu, got.appCPU, got.piCPU = since(u.pid, u.cpu0), since(u.appPID, u.appCPU0), since(u.piPID, u.piCPU0)
	got.selfCPU = self - u.selfCPU0
	if err := errors.Join(errs...); err != nil {
		return procTimes{}, err
	}
	return got, nil
}

func (r *flowRun) cpuPerFlow() time.Duration    { return perFlow(r.cpu, r.res.Ops) }
func (r *flowRun) appCPUPerFlow() time.Duration { return perFlow(r.appCPU, r.res.Ops) }
func (r *flowRun) piCPUPerFlow() time.Duration  { return perFlow(r.piCPU, r.res.Ops) }
func (r *flowRun) genCPUPerFlow() time.Duration { return perFlow(r.genCPU, r.res.Ops) }

func perFlow(d time.Duration, flows int) time.Duration {
	if flows == 0 {
		return 0
	}
	return d / time.Duration(flows)
}

// summary is what the payments command writes with -summary and the compare
// command reads: one setup's figures.
type summary struct {
	Name    string `json:"name"`
	IdleRSS int64  `json:"idle_rss_bytes"`
	// NProc is the CPUs the load generator could use: the machine's, when
	// everything runs on it.
	NProc int          `json:"nproc"`
	Runs  []summaryRun `json:"runs"`
}

// summaryRun is one run (one Pi latency, one concurrency) of a summary.
// Durations are in nanoseconds.
type summaryRun struct {
	LatencyMS   int           `json:"latency_ms"`
	Conc        int           `json:"concurrency"`
	Flows       int           `json:"flows"`
	Errors      int           `json:"errors"`
	FlowsPerSec float64       `json:"flows_per_s"`
	FlowP50     time.Duration `json:"flow_p50"`
	FlowP99     time.Duration `json:"flow_p99"`
	ApproveP50  time.Duration `json:"approve_p50"`
	CompleteP50 time.Duration `json:"complete_p50"`
	CPUPerFlow  time.Duration `json:"cpu_per_flow"`
	AppCPU      time.Duration `json:"app_cpu_per_flow"`
	RSSMax      int64         `json:"rss_max_bytes"`
	// PiCPU is the fake Pi's CPU time per flow (payments -pi-pid), LoadgenCPU
	// the load generator's own: with AppCPU, what the machine spends per
	// flow besides the server.
	PiCPU      time.Duration `json:"pi_cpu_per_flow"`
	LoadgenCPU time.Duration `json:"loadgen_cpu_per_flow"`
	// GuardAdded is the guard's own time per phase (p50), from its log;
	// absent for a server that is not the guard.
	GuardAdded map[string]time.Duration `json:"guard_added_p50,omitempty"`
}

func writeSummary(path, name string, idleRSS int64, runs []*flowRun) error {
	s := summary{Name: name, IdleRSS: idleRSS, NProc: runtime.NumCPU()}
	for _, r := range runs {
		sr := summaryRun{
			LatencyMS: r.latencyMS, Conc: r.conc, Flows: r.res.Ops, Errors: r.res.Errors, FlowsPerSec: r.res.Rate(),
			FlowP50: r.res.Lat.Quantile(0.5), FlowP99: r.res.Lat.Quantile(0.99),
			ApproveP50: r.approve.Quantile(0.5), CompleteP50: r.complete.Quantile(0.5),
			CPUPerFlow: r.cpuPerFlow(), AppCPU: r.appCPUPerFlow(), RSSMax: r.rssMax,
			PiCPU: r.piCPUPerFlow(), LoadgenCPU: r.genCPUPerFlow(),
		}
		for phase, ps := range r.phases {
			if sr.GuardAdded == nil {
				sr.GuardAdded = map[string]time.Duration{}
			}
			sr.GuardAdded[phase] = ps.added.Quantile(0.5)
		}
		s.Runs = append(s.Runs, sr)
	}
	return writeJSON(path, s)
}

func readSummary(path string) (*summary, error) {
	var s summary
	if err := readJSON(path, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// writeJSON writes v as indented JSON to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// readJSON reads path as JSON into v; the error names the file.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// run finds the run at one latency and concurrency.
func (s *summary) run(lat, conc int) *summaryRun {
	for i := range s.Runs {
		if s.Runs[i].LatencyMS == lat && s.Runs[i].Conc == conc {
			return &s.Runs[i]
		}
	}
	return nil
}
