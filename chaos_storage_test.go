package piguard

import (
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
)

// The storages the fault suites run on: file_system, where the guard keeps
// its own file locks, journal and group commit; and netlike
// (internal/netstore), which behaves like a networked storage module such
// as Redis: every call a round trip of 1–3 ms, flat keys in an index,
// locks kept by a dead holder for 5 s and tried once a second, no TryLock.
const (
	fileSystemStorage = "file_system"
	netlikeStorage    = "netlike"
)

var suiteStorages = []string{fileSystemStorage, netlikeStorage}

// forEachStorage runs f as one subtest per storage of suiteStorages.
func forEachStorage(t *testing.T, f func(t *testing.T, kind string)) {
	for _, kind := range suiteStorages {
		t.Run(kind, func(t *testing.T) { f(t, kind) })
	}
}

// newSuiteStorage returns a fresh, empty storage of kind; for netlike also
// its server, which every instance of the test shares (as the processes of
// a cluster share a Redis), else nil.
func newSuiteStorage(t testing.TB, kind string) (certmagic.Storage, *netstore.Server) {
	if kind != netlikeStorage {
		return testStorage(t), nil
	}
	srv := netstore.NewServer()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return netstore.NewStorage(hs.URL), srv
}

// logStorageCounts logs what the networked storage makes the guard wait
// for: lock waits (Lock calls that found the lock held; each waits at
// least a second), refused tries and locks taken over after they expired.
func logStorageCounts(t testing.TB, srv *netstore.Server) {
	if srv == nil {
		return
	}
	st := srv.Stats()
	t.Logf("netlike storage locks: %d taken, %d Lock calls waited (%d tries refused), %d taken over after expiry",
		st.Acquired, st.Waits, st.Refused, st.Expired)
}
