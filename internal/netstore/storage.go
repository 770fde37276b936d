package netstore

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Defaults of a Storage.
const (
	DefaultLatency   = time.Millisecond
	DefaultJitter    = 2 * time.Millisecond
	DefaultLockTTL   = 5 * time.Second
	DefaultLockRetry = time.Second
)

// Storage is the client of a Server: a certmagic.Storage whose every call is
// one HTTP round trip, delayed by Latency plus up to Jitter. It has no
// TryLock: Lock tries once every LockRetry until the lock is free, then
// refreshes it every LockTTL/3 until Unlock or until Lock's context ends;
// a lock not refreshed for LockTTL (its holder died) is free again.
type Storage struct {
	URL       string
	Latency   time.Duration
	Jitter    time.Duration
	LockTTL   time.Duration
	LockRetry time.Duration
	Client    *http.Client

	mu sync.Mutex
	// held: the locks this Storage holds, oldest first; more than one per
	// name only when a holder's context ended and its lock expired.
	held map[string][]*heldLock
}

// heldLock is a lock this Storage holds.
type heldLock struct {
	token string
	stop  chan struct{} // closed by Unlock: the refresher stops
	done  chan struct{} // closed when the refresher has stopped
}

// NewStorage returns a client of the server at url with the defaults.
func NewStorage(url string) *Storage {
	return &Storage{URL: url, Latency: DefaultLatency, Jitter: DefaultJitter, LockTTL: DefaultLockTTL, LockRetry: DefaultLockRetry}
}

var (
	_ certmagic.Storage = (*Storage)(nil)
	_ fmt.Stringer      = (*Storage)(nil)
)

// String names the storage by its server, so that the guard recognises it
// across config reloads.
func (s *Storage) String() string { return "pi_guard_netlike " + s.URL }

// call sends one request to the server, after the configured latency.
func (s *Storage) call(ctx context.Context, req request) (response, error) {
	var resp response
	delay := s.Latency
	if s.Jitter > 0 {
		delay += rand.N(s.Jitter)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return resp, ctx.Err()
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return resp, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return resp, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	hresp, err := client.Do(hreq)
	if err != nil {
		return resp, fmt.Errorf("netlike storage: %s %s: %w", req.Op, req.Key, err)
	}
	defer hresp.Body.Close()
	data, _ := io.ReadAll(hresp.Body)
	switch hresp.StatusCode {
	case http.StatusOK:
		return resp, json.Unmarshal(data, &resp)
	case http.StatusNotFound:
		return resp, fmt.Errorf("netlike storage: %s: %w", req.Key, fs.ErrNotExist)
	default:
		return resp, fmt.Errorf("netlike storage: %s %s: %s: %s", req.Op, req.Key, hresp.Status, bytes.TrimSpace(data))
	}
}

// Store puts value at key, whole.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	_, err := s.call(ctx, request{Op: "store", Key: key, Value: value})
	return err
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.call(ctx, request{Op: "load", Key: key})
	return resp.Value, err
}

// Delete removes key and every key below it; a missing key is no error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	_, err := s.call(ctx, request{Op: "delete", Key: key})
	return err
}

// Exists reports whether key, or a key below it, exists.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	resp, err := s.call(ctx, request{Op: "exists", Key: key})
	return err == nil && resp.Exists
}

// List returns the keys below prefix: all of them when recursive, else
// those one level down (keys and "directories"); none is no error.
func (s *Storage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	resp, err := s.call(ctx, request{Op: "list", Key: prefix, Recursive: recursive})
	return resp.Keys, err
}

// Stat describes key.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	resp, err := s.call(ctx, request{Op: "stat", Key: key})
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	return certmagic.KeyInfo{Key: key, Modified: resp.Modified, Size: resp.Size, IsTerminal: resp.Terminal}, nil
}

// Lock takes the lock of name, trying once every LockRetry while it is
// held, until ctx ends. The lock is kept fresh until Unlock, or until ctx
// ends: then it expires LockTTL after its last refresh.
func (s *Storage) Lock(ctx context.Context, name string) error {
	token := newToken()
	ttl := s.lockTTL().Milliseconds()
	for {
		resp, err := s.call(ctx, request{Op: "lock", Key: name, Token: token, TTL: ttl})
		if err != nil {
			return err
		}
		if resp.Acquired {
			break
		}
		t := time.NewTimer(s.lockRetry())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	h := &heldLock{token: token, stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.Lock()
	if s.held == nil {
		s.held = map[string][]*heldLock{}
	}
	s.held[name] = append(s.held[name], h)
	s.mu.Unlock()
	go s.refresh(ctx, name, h)
	return nil
}

// refresh keeps a held lock fresh until Unlock or until ctx ends.
func (s *Storage) refresh(ctx context.Context, name string, h *heldLock) {
	defer close(h.done)
	// Unlock waits for this loop, and must not wait for a refresh sent to
	// a server that stopped answering: Unlock ends it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(s.lockTTL() / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// A refresh that gets no answer is given up in time for the
			// next to go out before the lock expires.
			rctx, cancel := context.WithTimeout(ctx, s.lockTTL()/2)
			_, _ = s.call(rctx, request{Op: "refresh", Key: name, Token: h.token, TTL: s.lockTTL().Milliseconds()})
			cancel()
		}
	}
}

// Unlock releases a lock this Storage holds: of several under one name,
// one that is no longer refreshed (its context ended) first, else the
// oldest.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	hs := s.held[name]
	var h *heldLock
	i := 0
	for j, c := range hs {
		select {
		case <-c.done:
			i = j
		default:
			continue
		}
		break
	}
	if len(hs) > 0 {
		h = hs[i]
		hs = append(hs[:i:i], hs[i+1:]...)
	}
	if len(hs) == 0 {
		delete(s.held, name)
	} else {
		s.held[name] = hs
	}
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("netlike storage: unlock of %s, which is not held", name)
	}
	close(h.stop)
	<-h.done
	_, err := s.call(ctx, request{Op: "unlock", Key: name, Token: h.token})
	return err
}

func (s *Storage) lockTTL() time.Duration {
	if s.LockTTL > 0 {
		return s.LockTTL
	}
	return DefaultLockTTL
}

func (s *Storage) lockRetry() time.Duration {
	if s.LockRetry > 0 {
		return s.LockRetry
	}
	return DefaultLockRetry
}

func newToken() string {
	var b [12]byte
	_, _ = cryptorand(b[:])
	return hex.EncodeToString(b[:])
}

var cryptorand = crand.Read

var errNoURL = errors.New("pi_guard_netlike storage: url is required")
