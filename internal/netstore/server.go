// Package netstore is a storage for the test suites that behaves like a
// networked Caddy storage (Redis, a database, an object store) rather than
// like file_system: a Server keeps the keys in memory and is shared by
// several Caddy processes through the Caddy storage module
// caddy.storage.pi_guard_netlike (see Storage).
//
// What it emulates, on purpose:
//
//   - every call is a network round trip, with a configurable latency;
//   - keys are flat strings in an index: List filters the index by prefix,
//     there are no directories, no rename and no partial writes;
//   - a lock is a key with an expiry (LockTTL, 5 s by default) that its
//     holder refreshes while it holds it: the lock of a holder that died
//     stays until it expires. The holder refreshes it until Unlock or until
//     the context it was taken with ends, whichever comes first: stricter
//     than caddy-storage-redis (which refreshes until Unlock), as strict as
//     the guard allows a storage module to be;
//   - a lock that is held is tried again once a second (LockRetry), and
//     there is no TryLock (like the caddy-storage-redis plugin).
//
// It is not durable and not meant for production.
package netstore

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// request is one call to the server: POST / with this JSON body.
type request struct {
	Op        string `json:"op"` // store, load, delete, exists, list, stat, lock, refresh, unlock
	Key       string `json:"key"`
	Value     []byte `json:"value,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
	Token     string `json:"token,omitempty"`
	TTL       int64  `json:"ttl_ms,omitempty"`
}

// response is the server's answer; a missing key is answered 404.
type response struct {
	Value    []byte    `json:"value,omitempty"`
	Keys     []string  `json:"keys,omitempty"`
	Exists   bool      `json:"exists,omitempty"`
	Acquired bool      `json:"acquired,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
	Size     int64     `json:"size,omitempty"`
	Terminal bool      `json:"terminal,omitempty"`
}

type item struct {
	value    []byte
	modified time.Time
}

type lock struct {
	token   string
	expires time.Time
}

// Server keeps the keys and locks of one shared storage in memory. It is an
// http.Handler: serve it with httptest.NewServer or http.Serve.
type Server struct {
	mu    sync.Mutex
	items map[string]item
	locks map[string]lock
	// waited: tokens (one per Lock call) that found their lock held at
	// least once.
	waited map[string]struct{}
	stats  Stats
	// stalled: the ops the server reads but does not answer (nil: none;
	// empty: all), until resume is closed.
	stalled map[string]bool
	resume  chan struct{}
}

// Stats counts what the server saw of the locks.
type Stats struct {
	// Acquired counts the locks taken.
	Acquired int
	// Refused counts the tries that found the lock held (a Lock call
	// tries once a second).
	Refused int
	// Waits counts the Lock calls that found their lock held at least once.
	Waits int
	// Expired counts the locks taken over after their holder stopped
	// refreshing them (it died, or its context ended).
	Expired int
}

// NewServer returns an empty server.
func NewServer() *Server {
	return &Server{items: map[string]item{}, locks: map[string]lock{}, waited: map[string]struct{}{}}
}

// Stall makes the server stop answering calls of the given ops (store,
// load, delete, exists, list, stat, lock, refresh, unlock; all of them when
// none is given), as a storage server that hangs does: each such call is
// read, then held unanswered until its client gives up or Resume.
func (s *Server) Stall(ops ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = map[string]bool{}
	for _, op := range ops {
		s.stalled[op] = true
	}
	if s.resume == nil {
		s.resume = make(chan struct{})
	}
}

// Resume answers every call again; the calls held by Stall are answered
// 503 Service Unavailable.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resume != nil {
		close(s.resume)
	}
	s.stalled, s.resume = nil, nil
}

// stall reports the channel to wait on when op is stalled, else nil.
func (s *Server) stall(op string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled != nil && (len(s.stalled) == 0 || s.stalled[op]) {
		return s.resume
	}
	return nil
}

// ServeHTTP answers one call.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req request
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if resume := s.stall(req.Op); resume != nil {
		select {
		case <-r.Context().Done():
		case <-resume:
			http.Error(w, "stalled", http.StatusServiceUnavailable)
		}
		return
	}
	resp, found := s.do(req)
	if !found {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// do runs one call; found is false when the key does not exist.
func (s *Server) do(req request) (resp response, found bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	switch req.Op {
	case "store":
		s.items[req.Key] = item{value: append([]byte(nil), req.Value...), modified: now}
	case "load":
		it, ok := s.items[req.Key]
		if !ok {
			return resp, false
		}
		resp.Value = it.value
	case "delete":
		delete(s.items, req.Key)
		for _, k := range s.under(req.Key) {
			delete(s.items, k)
		}
	case "exists":
		_, ok := s.items[req.Key]
		resp.Exists = ok || len(s.under(req.Key)) > 0
	case "stat":
		if it, ok := s.items[req.Key]; ok {
			resp.Modified, resp.Size, resp.Terminal = it.modified, int64(len(it.value)), true
		} else if len(s.under(req.Key)) == 0 {
			return resp, false
		}
	case "list":
		resp.Keys = s.list(req.Key, req.Recursive) // none: an empty list, as from Redis
	case "lock":
		l, held := s.locks[req.Key]
		switch {
		case held && l.token != req.Token && now.Before(l.expires):
			s.stats.Refused++
			if _, ok := s.waited[req.Token]; !ok {
				s.waited[req.Token] = struct{}{}
				s.stats.Waits++
			}
		default:
			if held && l.token != req.Token {
				s.stats.Expired++
			}
			delete(s.waited, req.Token)
			s.locks[req.Key] = lock{token: req.Token, expires: now.Add(time.Duration(req.TTL) * time.Millisecond)}
			s.stats.Acquired++
			resp.Acquired = true
		}
	case "refresh":
		if l, ok := s.locks[req.Key]; ok && l.token == req.Token {
			l.expires = now.Add(time.Duration(req.TTL) * time.Millisecond)
			s.locks[req.Key] = l
			resp.Acquired = true
		}
	case "unlock":
		if l, ok := s.locks[req.Key]; ok && l.token == req.Token {
			delete(s.locks, req.Key)
			resp.Acquired = true
		}
	}
	return resp, true
}

// under returns the keys below dir ("dir/..."), unsorted.
func (s *Server) under(dir string) []string {
	var out []string
	p := strings.TrimSuffix(dir, "/") + "/"
	for k := range s.items {
		if strings.HasPrefix(k, p) {
			out = append(out, k)
		}
	}
	return out
}

// list filters the index: every key below prefix when recursive, else the
// keys and the "directories" one level below it, sorted.
func (s *Server) list(prefix string, recursive bool) []string {
	p := strings.TrimSuffix(prefix, "/") + "/"
	seen := map[string]struct{}{}
	for _, k := range s.under(prefix) {
		if !recursive {
			if i := strings.IndexByte(k[len(p):], '/'); i >= 0 {
				k = k[:len(p)+i]
			}
		}
		seen[k] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Keys returns the stored keys that start with prefix, sorted: for the
// tests, which read the shared storage directly.
func (s *Server) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.items {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Value returns the value stored at key.
func (s *Server) Value(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[key]
	return it.value, ok
}

// HeldLock is a lock the server holds, for the tests' reports.
type HeldLock struct {
	Name    string
	Expires time.Time
}

// Locks returns the locks that have not expired, by name.
func (s *Server) Locks() []HeldLock {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []HeldLock
	now := time.Now()
	for name, l := range s.locks {
		if now.Before(l.expires) {
			out = append(out, HeldLock{name, l.expires})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stats returns the server's lock counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}
