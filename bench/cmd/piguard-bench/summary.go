package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"
)

// procUsage measures the server's (and its app's) CPU time and the server's
// highest RSS over one run.
type procUsage struct {
	pid, appPID   int
	cpu0, appCPU0 time.Duration
	rss           *rssSampler
	err           error
	measureServer bool
	measureApp    bool
}

// startUsage starts measuring; pid 0 measures nothing.
func startUsage(ctx context.Context, pid, appPID int) *procUsage {
	u := &procUsage{pid: pid, appPID: appPID, measureServer: pid != 0, measureApp: appPID != 0}
	if u.measureServer {
		u.cpu0, u.err = procCPU(pid)
		u.rss = sampleRSS(ctx, pid, 100*time.Millisecond)
	}
	if u.measureApp && u.err == nil {
		u.appCPU0, u.err = procCPU(appPID)
	}
	return u
}

// finish returns the CPU time the server and the app used since the start,
// and the server's highest RSS.
func (u *procUsage) finish() (cpu, appCPU time.Duration, rssMax int64, err error) {
	if u.rss != nil {
		rssMax, err = u.rss.finish()
	}
	if err = errors.Join(u.err, err); err != nil {
		return 0, 0, 0, err
	}
	if u.measureServer {
		c, err := procCPU(u.pid)
		if err != nil {
			return 0, 0, 0, err
		}
		cpu = c - u.cpu0
	}
	if u.measureApp {
		c, err := procCPU(u.appPID)
		if err != nil {
			return 0, 0, 0, err
		}
		appCPU = c - u.appCPU0
	}
	return cpu, appCPU, rssMax, nil
}

func (r *flowRun) cpuPerFlow() time.Duration    { return perFlow(r.cpu, r.res.Ops) }
func (r *flowRun) appCPUPerFlow() time.Duration { return perFlow(r.appCPU, r.res.Ops) }

func perFlow(d time.Duration, flows int) time.Duration {
	if flows == 0 {
		return 0
	}
	return d / time.Duration(flows)
}

// summary is what the payments command writes with -summary and the compare
// command reads: one setup's figures.
type summary struct {
	Name    string       `json:"name"`
	IdleRSS int64        `json:"idle_rss_bytes"`
	Runs    []summaryRun `json:"runs"`
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
	// GuardAdded is the guard's own time per phase (p50), from its log;
	// absent for a server that is not the guard.
	GuardAdded map[string]time.Duration `json:"guard_added_p50,omitempty"`
}

func writeSummary(path, name string, idleRSS int64, runs []*flowRun) error {
	s := summary{Name: name, IdleRSS: idleRSS}
	for _, r := range runs {
		sr := summaryRun{
			LatencyMS: r.latencyMS, Conc: r.conc, Flows: r.res.Ops, Errors: r.res.Errors, FlowsPerSec: r.res.Rate(),
			FlowP50: r.res.Lat.Quantile(0.5), FlowP99: r.res.Lat.Quantile(0.99),
			ApproveP50: r.approve.Quantile(0.5), CompleteP50: r.complete.Quantile(0.5),
			CPUPerFlow: r.cpuPerFlow(), AppCPU: r.appCPUPerFlow(), RSSMax: r.rssMax,
		}
		for phase, ps := range r.phases {
			if sr.GuardAdded == nil {
				sr.GuardAdded = map[string]time.Duration{}
			}
			sr.GuardAdded[phase] = ps.added.Quantile(0.5)
		}
		s.Runs = append(s.Runs, sr)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func readSummary(path string) (*summary, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s summary
	return &s, json.Unmarshal(data, &s)
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
