package piguard

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the guard's Prometheus collectors, registered in Caddy's
// metrics registry (served on the admin endpoint's /metrics). Every pi_guard
// block of one config shares them; a config reload gets a fresh registry.
type metrics struct {
	requests        *prometheus.CounterVec   // phase, outcome
	piCalls         *prometheus.CounterVec   // endpoint, status
	piLatency       *prometheus.HistogramVec // endpoint
	verified        *prometheus.CounterVec   // phase
	owed            *prometheus.GaugeVec     // app, state: pending, exhausted
	exhausted       prometheus.Counter
	redeliveries    *prometheus.CounterVec // result: delivered, failed
	blockchainFails *prometheus.CounterVec // reason: mismatch, unavailable
	reconciled      *prometheus.CounterVec // outcome
	watched         *prometheus.GaugeVec   // app

	// children caches the collectors of label values seen, which every
	// request would otherwise look up by hashing and checking its labels.
	children sync.Map // childKey → prometheus.Counter or piChild
}

// childKey names one child collector: the vector's, and its labels.
type childKey struct {
	vec    uint8
	a, b   string
	status int
}

const (
	vecRequests = iota
	vecVerified
	vecPi
)

// piChild are the collectors of one Pi endpoint and status.
type piChild struct {
	calls   prometheus.Counter
	latency prometheus.Observer
}

// request counts one guarded request (requests_total).
func (m *metrics) request(phase, outcome string) {
	k := childKey{vec: vecRequests, a: phase, b: outcome}
	if c, ok := m.children.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.requests.WithLabelValues(phase, outcome)
	m.children.Store(k, c)
	c.Inc()
}

// verifiedForward counts one verified forward (verified_forwards_total).
func (m *metrics) verifiedForward(phase string) {
	k := childKey{vec: vecVerified, a: phase}
	if c, ok := m.children.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	c := m.verified.WithLabelValues(phase)
	m.children.Store(k, c)
	c.Inc()
}

const metricsNamespace, metricsSubsystem = "caddy", "pi_guard"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	opts := func(name, help string) (string, string, string, string) {
		return metricsNamespace, metricsSubsystem, name, help
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		ns, sub, n, h := opts(name, help)
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: n, Help: h}, labels)
	}
	m := &metrics{
		requests: counter("requests_total", "Guarded payment requests, by phase and outcome.", "phase", "outcome"),
		piCalls:  counter("pi_api_calls_total", "HTTP calls to the Pi Platform API, by endpoint and status (0: no answer).", "endpoint", "status"),
		piLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "pi_api_call_duration_seconds",
			Help:    "Latency of calls to the Pi Platform API, by endpoint.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		verified: counter("verified_forwards_total", "Requests forwarded to the app with a verified header, by phase.", "phase"),
		owed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "owed_deliveries",
			Help: "Completed payments not yet accepted by the app, by app (its storage prefix, pi_guard/<app>) and state (pending: will be redelivered; exhausted: needs an operator).",
		}, []string{"app", "state"}),
		exhausted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "deliveries_exhausted_total",
			Help: "Completed payments whose redelivery attempts were all used up.",
		}),
		redeliveries:    counter("redeliveries_total", "Background redelivery attempts, by result.", "result"),
		blockchainFails: counter("blockchain_check_failures_total", "Blockchain cross-checks that refused a payment, by reason.", "reason"),
	}
	var err error
	reg1 := func(c *prometheus.CounterVec) *prometheus.CounterVec {
		if err == nil {
			c, err = register(reg, c)
		}
		return c
	}
	m.requests, m.piCalls, m.verified = reg1(m.requests), reg1(m.piCalls), reg1(m.verified)
	m.redeliveries, m.blockchainFails = reg1(m.redeliveries), reg1(m.blockchainFails)
	if err == nil {
		m.piLatency, err = register(reg, m.piLatency)
	}
	if err == nil {
		m.owed, err = register(reg, m.owed)
	}
	if err == nil {
		m.exhausted, err = register(reg, m.exhausted)
	}
	if err == nil {
		err = m.registerReconcile(reg)
	}
	return m, err
}

// register registers c, or returns the collector another pi_guard block of
// the same config registered under the same name.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

// observePi is piclient's Observe hook.
func (m *metrics) observePi(op string, status int, took time.Duration) {
	k := childKey{vec: vecPi, a: op, status: status}
	v, ok := m.children.Load(k)
	if !ok {
		v = piChild{calls: m.piCalls.WithLabelValues(op, strconv.Itoa(status)), latency: m.piLatency.WithLabelValues(op)}
		m.children.Store(k, v)
	}
	c := v.(piChild)
	c.calls.Inc()
	c.latency.Observe(took.Seconds())
}

// registerReconcile creates and registers the reconciler's collectors.
func (m *metrics) registerReconcile(reg prometheus.Registerer) error {
	reconciled := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "reconciled_total",
		Help: "Approved payments the reconciler stopped watching, by outcome (completed, cancelled, gave_up, ...).",
	}, []string{"outcome"})
	watched := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Subsystem: metricsSubsystem, Name: "watched_payments",
		Help: "Approved payments not yet completed or settled, watched by the reconciler, by app (its storage prefix, pi_guard/<app>).",
	}, []string{"app"})
	var err error
	if m.reconciled, err = register(reg, reconciled); err != nil {
		return err
	}
	m.watched, err = register(reg, watched)
	return err
}
