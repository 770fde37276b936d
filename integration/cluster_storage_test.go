package integration

// The storages the cluster tests run on: file_system, in a temporary
// directory, with the guard's records in segments (the default) and in a
// file per payment (record_layout files); and netlike (internal/netstore), a server in this test process
// that both Caddy processes reach through the storage module
// caddy.storage.pi_guard_netlike, and that behaves like a networked storage
// such as Redis: every call a round trip of 1–3 ms, flat keys in an index,
// locks kept by a dead holder for 5 s and tried once a second, no TryLock.

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
)

const (
	fileSystemStorage = "file_system"
	// fileSystemFiles is file_system storage with record_layout files.
	fileSystemFiles = "file_system_files"
	netlikeStorage  = "netlike"
)

var clusterStorages = []string{fileSystemStorage, fileSystemFiles, netlikeStorage}

// forEachClusterStorage runs f as one subtest per storage.
func forEachClusterStorage(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range clusterStorages {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

// clusterStorage is the storage both instances share, as the test reads it.
type clusterStorage interface {
	// option is the Caddyfile's global storage option.
	option() string
	// glob returns the keys that match pattern (path.Match), sorted.
	glob(pattern string) []string
	// load returns the value of key.
	load(key string) ([]byte, error)
	// locks describes the storage locks held.
	locks(epoch time.Time) []string
	String() string
}

func newClusterStorage(t *testing.T, kind, dir string) clusterStorage {
	if kind != netlikeStorage {
		return fileClusterStorage(filepath.Join(dir, "storage"))
	}
	srv := netstore.NewServer()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &netClusterStorage{srv: srv, url: hs.URL}
}

// fileClusterStorage is file_system storage rooted at a directory.
type fileClusterStorage string

func (s fileClusterStorage) option() string { return fmt.Sprintf("storage file_system %q", string(s)) }
func (s fileClusterStorage) String() string { return "file_system " + string(s) }

func (s fileClusterStorage) glob(pattern string) []string {
	files, _ := filepath.Glob(filepath.Join(string(s), filepath.FromSlash(pattern)))
	var keys []string
	for _, f := range files {
		if rel, err := filepath.Rel(string(s), f); err == nil {
			keys = append(keys, filepath.ToSlash(rel))
		}
	}
	sort.Strings(keys)
	return keys
}

func (s fileClusterStorage) load(key string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(s), filepath.FromSlash(key)))
}

// lockFiles reads the storage lock files (certmagic FileStorage keeps them
// in <storage>/locks, with the time they were created and last refreshed).
func (s fileClusterStorage) lockFiles() []lockFile {
	files, _ := filepath.Glob(filepath.Join(string(s), "locks", "*.lock"))
	var out []lockFile
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var meta struct{ Created, Updated time.Time }
		_ = json.Unmarshal(data, &meta)
		out = append(out, lockFile{filepath.Base(f), meta.Created, meta.Updated})
	}
	return out
}

func (s fileClusterStorage) locks(epoch time.Time) []string {
	var out []string
	for _, f := range s.lockFiles() {
		out = append(out, fmt.Sprintf("%s: created +%dms, last refreshed +%dms (%v ago)", f.name,
			f.created.Sub(epoch).Milliseconds(), f.updated.Sub(epoch).Milliseconds(),
			time.Since(f.updated).Round(time.Millisecond)))
	}
	return out
}

// netClusterStorage is a netstore server in this process.
type netClusterStorage struct {
	srv *netstore.Server
	url string
}

// option: the module's defaults (latency 1 ms plus up to 2 ms, locks kept
// 5 s after their last refresh, tried once a second).
func (s *netClusterStorage) option() string {
	return fmt.Sprintf("storage pi_guard_netlike {\n\t\turl %s\n\t}", s.url)
}

func (s *netClusterStorage) String() string { return "pi_guard_netlike " + s.url }

func (s *netClusterStorage) glob(pattern string) []string {
	var keys []string
	for _, k := range s.srv.Keys("") {
		if ok, _ := path.Match(pattern, k); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

func (s *netClusterStorage) load(key string) ([]byte, error) {
	v, ok := s.srv.Value(key)
	if !ok {
		return nil, os.ErrNotExist
	}
	return v, nil
}

func (s *netClusterStorage) locks(epoch time.Time) []string {
	var out []string
	for _, l := range s.srv.Locks() {
		out = append(out, fmt.Sprintf("%s: expires +%dms (in %v)", l.Name, l.Expires.Sub(epoch).Milliseconds(),
			time.Until(l.Expires).Round(time.Millisecond)))
	}
	return out
}

// busyCounts counts the answers that told a client to retry because the
// payment was locked: payment_busy (its lock in the instance) and
// storage_busy (its storage lock).
type busyCounts struct {
	payment, storage atomic.Int64
}

// retryable reports whether an answer is one of those, counting it.
func (b *busyCounts) retryable(status int, body string) bool {
	switch {
	case status == 409 && strings.Contains(body, "payment_busy"):
		b.payment.Add(1)
	case status == 503 && strings.Contains(body, "storage_busy"):
		b.storage.Add(1)
	default:
		return false
	}
	return true
}

// logStorageCounts logs what the storage made the cluster wait for: the
// answers that told clients to retry, the storage's lock waits (netlike),
// and the watch entries left behind for payments already settled.
func (c *cluster) logStorageCounts() {
	c.t.Helper()
	line := fmt.Sprintf("%s: told to retry: %d payment_busy, %d storage_busy; stale watch entries: %d",
		c.kind, c.busy.payment.Load(), c.busy.storage.Load(), c.staleWatchEntries())
	if ns, ok := c.store.(*netClusterStorage); ok {
		st := ns.srv.Stats()
		line += fmt.Sprintf("; storage locks: %d taken, %d Lock calls waited (%d tries refused), %d taken over after expiry",
			st.Acquired, st.Waits, st.Refused, st.Expired)
	}
	c.t.Log(line)
}

// staleWatchEntries counts the watch entries in storage whose payment has a
// completed record once every instance has written its batch (the watch
// list is written a second after a change): entries that landed after the
// completion that removed them, or whose removal died with an instance.
// The reconciler removes them when it checks them (by default minutes
// later), at the cost of a Pi read each.
func (c *cluster) staleWatchEntries() int {
	count := func() int {
		recs := c.records()
		n := 0
		for _, k := range c.store.glob("pi_guard/*/watch/*.json") {
			id := strings.TrimSuffix(path.Base(k), ".json")
			if r, ok := recs[id]; ok && r.Phase == "complete" {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(2500 * time.Millisecond)
	for {
		n := count()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// segmentRecords reads the records in the segments of file_system storage
// (pi_guard/<app>/log/*.seg), each payment's of the highest version, as
// the guard reads them.
func segmentRecords(s clusterStorage) map[string]storedRecord {
	out := map[string]storedRecord{}
	versions := map[string]uint64{}
	for _, k := range s.glob("pi_guard/*/log/*.seg") {
		data, err := s.load(k)
		if err != nil {
			continue // compacted meanwhile: its records are in a newer one
		}
		lines, _ := seglog.Scan(data)
		for _, line := range lines {
			var r struct {
				storedRecord
				Version uint64 `json:"version"`
			}
			if json.Unmarshal(line, &r) != nil {
				continue
			}
			if v, seen := versions[r.PaymentID]; !seen || r.Version >= v {
				out[r.PaymentID], versions[r.PaymentID] = r.storedRecord, r.Version
			}
		}
	}
	return out
}
