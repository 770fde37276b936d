package pitest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// DefaultAPIKey is the app's server API key when Options.APIKey is empty.
const DefaultAPIKey = "pitest-api-key"

// Options configures a Server. Zero values select the defaults.
type Options struct {
	// APIKey is the app's server API key; default DefaultAPIKey.
	APIKey string
	// Wallet is the app's wallet address; default a random valid G... address.
	Wallet string
	// Network of new payments; default piclient.NetworkTestnet.
	Network string
	// Seed seeds the random source that decides which calls a Fault with a
	// Fraction hits, so that a test can be repeated exactly; 0 means a random
	// seed. Identifiers, txids and addresses are always random.
	Seed uint64
}

// Server is a fake Pi Platform API (under /v2), a fake Horizon (under
// /horizon) and a control API (under /control) on one 127.0.0.1 listener.
// Every method is safe for concurrent use. The exported fields are set by the
// constructor and must not be changed.
type Server struct {
	// URL is the API base URL including /v2, e.g. http://127.0.0.1:PORT/v2.
	URL string
	// HorizonURL is the base URL of the fake Horizon, e.g.
	// http://127.0.0.1:PORT/horizon.
	HorizonURL string
	// ControlURL is the base URL of the control API, e.g.
	// http://127.0.0.1:PORT/control.
	ControlURL string
	// APIKey is the app's server API key.
	APIKey string
	// Wallet is the app's wallet address: the to_address of its user-to-app
	// payments.
	Wallet string
	// Network is the network of new payments by default.
	Network string

	ts      *httptest.Server
	handler http.Handler
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	apps     map[string]string // API key → wallet address
	payments map[string]*payment
	seq      int
	txs      map[string]*chainTx // txid → on-chain transaction
	ledger   int64
	users    map[string]*user  // access token → user
	addrs    map[string]string // user uid → wallet address
	calls    map[Endpoint]int
	callsFor map[callKey]int
	faults   map[Endpoint][]*queuedFault
	latency  time.Duration
	rnd      *rand.Rand
}

// NewServer starts a Server on a random port of 127.0.0.1. Close it when done,
// typically with t.Cleanup(s.Close).
func NewServer(opts ...Options) *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("pitest: listening on 127.0.0.1: %v", err))
	}
	return start(ln, opts)
}

// NewServerAt starts a Server listening on addr, such as "127.0.0.1:8090"
// (port 0 picks a free port). It is what the fakepi command uses.
func NewServerAt(addr string, opts ...Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pitest: %w", err)
	}
	return start(ln, opts), nil
}

func start(ln net.Listener, opts []Options) *Server {
	s := newServer(opts)
	base := "http://" + ln.Addr().String()
	s.URL = base + "/v2"
	s.HorizonURL = base + "/horizon"
	s.ControlURL = base + "/control"
	s.ts = &httptest.Server{
		Listener: ln,
		Config:   &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second},
	}
	s.ts.Start()
	return s
}

func newServer(opts []Options) *Server {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.APIKey == "" {
		o.APIKey = DefaultAPIKey
	}
	if o.Wallet == "" {
		o.Wallet = randomAddress()
	}
	if o.Network == "" {
		o.Network = piclient.NetworkTestnet
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		APIKey:   o.APIKey,
		Wallet:   o.Wallet,
		Network:  o.Network,
		closing:  make(chan struct{}),
		apps:     map[string]string{o.APIKey: o.Wallet},
		payments: map[string]*payment{},
		txs:      map[string]*chainTx{},
		ledger:   1_000_000,
		users:    map[string]*user{},
		addrs:    map[string]string{},
		calls:    map[Endpoint]int{},
		callsFor: map[callKey]int{},
		faults:   map[Endpoint][]*queuedFault{},
		rnd:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", s.serveAPI)
	mux.HandleFunc("/horizon/", s.serveHorizon)
	mux.HandleFunc("/control/", s.serveControl)
	for path := range sdkFiles {
		mux.HandleFunc(path, serveSDK)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such path: "+r.URL.Path)
	})
	s.handler = mux
	return s
}

// Close stops the server: pending delays end at once, then Close waits for
// requests in progress to finish.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.ts.Close()
	})
}

// Handler returns the whole handler: the API under /v2, Horizon under
// /horizon and the control API under /control.
func (s *Server) Handler() http.Handler { return s.handler }

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	writeBody(w, status, "application/json; charset=utf-8", body)
}

func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// apiError is Pi's error body: {"error": code, "error_message": text}, with
// verification_error instead of error_message for verification_failed, and
// the payment beside some refusals.
type apiError struct {
	Error             string       `json:"error"`
	ErrorMessage      string       `json:"error_message,omitempty"`
	VerificationError string       `json:"verification_error,omitempty"`
	Payment           *wirePayment `json:"payment,omitempty"`
}

// writeError answers with Pi's error body.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: code, ErrorMessage: msg})
}

// methodNotAllowed answers 405 with an Allow header.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+allow)
}
