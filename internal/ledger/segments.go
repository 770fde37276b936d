package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// segStore keeps the records of file_system storage in segments
// (<prefix>/log/*.seg, docs/segment-store.md) instead of a file per
// payment: each instance appends its records, one JSON line each, to
// segments of its own (seglog.Writer: an owed record synced before Save
// returns, concurrent ones sharing one fdatasync; a delivered one written,
// not synced), and every instance reads every instance's segments.
//
// The index maps each payment to its current record: the one with the
// highest Version (every write of a record is made under the payment's
// lock after a Load, which reads the others' segments first: see refresh).
// Records of equal version are copies (a compaction's): the one in the
// segment found later wins, so that the older can be removed.
//
// One segStore serves every Ledger of a process over the same directory,
// so that a config reload keeps its index and its writer.
type segStore struct {
	dir string

	wmu sync.Mutex
	w   *seglog.Writer

	mu     sync.Mutex
	idx    map[string]segRec
	segs   []*segFile // by number, in the order found; nil once removed
	byName map[string]uint32
	// mtime is log/'s modification time at the last listing (ns), live the
	// number of other writers' segments not known finished: while both are
	// unchanged and zero, a refresh is one stat.
	mtime atomic.Int64
	live  atomic.Int32
}

// segRec is where a payment's current record is, and what compaction and
// Owed need of it without reading it.
type segRec struct {
	seg     uint32
	ln      uint32
	off     int64
	version uint64
	updated int64 // the record's Updated, Unix ns
	owed    bool
}

// segFile is one segment, as this process knows it.
type segFile struct {
	name string // base name
	f    *os.File
	// tail follows another writer's segment until it is known finished
	// (nil for this process's own segments, and once finished).
	tail *seglog.Tail
	own  bool
	size int64 // bytes of whole lines known
}

// segStores holds the process's segStore of each directory.
var segStores sync.Map // dir → *segStore

func segStoreFor(dir string) *segStore {
	s, _ := segStores.LoadOrStore(dir, newSegStore(dir))
	return s.(*segStore)
}

// newSegStore returns a segStore of its own over dir: another instance's,
// for tests.
func newSegStore(dir string) *segStore {
	return &segStore{dir: dir, idx: map[string]segRec{}, byName: map[string]uint32{}}
}

// writer is the current segment writer; a failed one is replaced, so that
// the next write tries a new segment (the failed one is left as it is).
func (s *segStore) writer(failed *seglog.Writer) *seglog.Writer {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil || s.w == failed {
		s.w = seglog.NewWriter(s.dir)
	}
	return s.w
}

// save appends rec (data is its JSON) and indexes it: durably for an owed
// record, else written without a sync.
func (s *segStore) save(ctx context.Context, rec *Record, data []byte) error {
	w := s.writer(nil)
	at, err := w.Append(ctx, data, rec.Owed())
	if errors.Is(err, seglog.ErrWriterFailed) {
		s.writer(w)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.register(at.Segment, true)
	s.segs[n].size = max(s.segs[n].size, at.Off+int64(len(data))+1)
	s.put(rec.PaymentID, segRec{seg: n, off: at.Off, ln: uint32(len(data)), version: rec.Version,
		updated: rec.Updated.UnixNano(), owed: rec.Owed()})
	return nil
}

// register returns the number of the segment named base, adding it when
// new. The caller holds mu.
func (s *segStore) register(base string, own bool) uint32 {
	n, ok := s.byName[base]
	if !ok {
		n = uint32(len(s.segs))
		s.segs = append(s.segs, &segFile{name: base})
		s.byName[base] = n
	}
	if sf := s.segs[n]; own && !sf.own {
		sf.own = true
		if sf.tail != nil {
			sf.tail = nil // found by a listing before its first append returned
			s.live.Add(-1)
		}
	}
	return n
}

// put makes r payment id's current record unless it has a newer one (or
// the same version in a segment found later). The caller holds mu.
func (s *segStore) put(id string, r segRec) {
	if e, ok := s.idx[id]; ok && (e.version > r.version || e.version == r.version && e.seg > r.seg) {
		return
	}
	s.idx[id] = r
}

// load returns payment id's current record, or nil when the segments have
// none. It reads the other writers' segments first (see refresh).
func (s *segStore) load(id string) (*Record, error) {
	for try := 0; ; try++ {
		if err := s.refresh(try > 0); err != nil {
			return nil, err
		}
		s.mu.Lock()
		r, ok := s.idx[id]
		var sf *segFile
		if ok {
			sf = s.segs[r.seg]
		}
		f, err := s.open(sf)
		s.mu.Unlock()
		if !ok {
			return nil, nil
		}
		if errors.Is(err, fs.ErrNotExist) && try == 0 {
			continue // compacted away since: its copy is in a newer segment
		}
		if err != nil {
			return nil, fmt.Errorf("reading the record of payment %s: %w", id, err)
		}
		buf := make([]byte, r.ln)
		if _, err := f.ReadAt(buf, r.off); err != nil {
			return nil, fmt.Errorf("reading the record of payment %s in %s: %w", id, sf.name, err)
		}
		var rec Record
		if err := json.Unmarshal(buf, &rec); err != nil {
			return nil, fmt.Errorf("record of payment %s in %s is corrupt: %w", id, sf.name, err)
		}
		return &rec, nil
	}
}

// open returns sf's file, opened for reading once. The caller holds mu.
func (s *segStore) open(sf *segFile) (*os.File, error) {
	if sf == nil {
		return nil, fs.ErrNotExist
	}
	if sf.f == nil {
		f, err := os.Open(filepath.Join(s.dir, sf.name))
		if err != nil {
			return nil, err
		}
		sf.f = f
	}
	return sf.f, nil
}

// owed lists the payments whose current record is owed.
func (s *segStore) owed() ([]string, error) {
	if err := s.refresh(false); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, r := range s.idx {
		if r.owed {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// current reports whether the segments hold a record of payment id, and
// whether it is owed (as of the last refresh).
func (s *segStore) current(id string) (has, owed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.idx[id]
	return ok, r.owed
}

// refresh reads what the other writers appended since the last refresh:
// the segments that appeared in log/ (when its mtime moved, or with
// relist) and the growth of those not known finished. A record another
// instance wrote before it released a payment's lock is therefore seen by
// a Load made under that lock. With no other writer, it is one stat.
func (s *segStore) refresh(relist bool) error {
	fi, err := os.Stat(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing written yet
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", s.dir, err)
	}
	m := fi.ModTime().UnixNano()
	if !relist && m == s.mtime.Load() && s.live.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []uint32
	if relist || m != s.mtime.Load() {
		if gone, err = s.list(); err != nil {
			return err
		}
		s.mtime.Store(m)
	}
	s.readLive()
	s.drop(gone)
	return nil
}

// list adds the segments log/ holds that are not known yet (in name order,
// which is their order of creation) and returns those known that are gone
// (compacted). The caller holds mu.
func (s *segStore) list() (gone []uint32, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", s.dir, err)
	}
	there := make(map[string]bool, len(entries))
	for _, e := range entries { // sorted by name
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") || strings.HasPrefix(name, ".") {
			continue
		}
		there[name] = true
		if _, known := s.byName[name]; known {
			continue
		}
		f, err := os.Open(filepath.Join(s.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // compacted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", name, err)
		}
		n := s.register(name, false)
		s.segs[n].f, s.segs[n].tail = f, seglog.NewTail(f, 0)
		s.live.Add(1)
	}
	for name, n := range s.byName {
		if there[name] {
			continue
		}
		// Not listed: gone, or made by this process's writer after the
		// listing read the folder.
		if _, err := os.Lstat(filepath.Join(s.dir, name)); errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, n)
		}
	}
	return gone, nil
}

// readLive reads the lines appended to the other writers' segments not
// known finished; one its writer no longer holds is read to its end and
// then known finished. The caller holds mu.
func (s *segStore) readLive() {
	for n, sf := range s.segs {
		if sf == nil || sf.tail == nil {
			continue
		}
		free := seglog.Free(sf.f) // before the read: what it reads then is all there is
		lines, offs, err := sf.tail.Read()
		for i, line := range lines {
			s.index(line, uint32(n), offs[i])
		}
		sf.size = sf.tail.Offset()
		if free || err != nil {
			// Finished (or no segment: a line longer than any record).
			sf.tail = nil
			s.live.Add(-1)
		}
	}
}

// index indexes a line of another writer's segment. A line that is not a
// record of a well-formed payment id (a batch a crash cut short, or bytes
// that are not a segment) is skipped. The caller holds mu.
func (s *segStore) index(line []byte, n uint32, off int64) {
	var h struct {
		PaymentID string    `json:"payment_id"`
		Version   uint64    `json:"version"`
		Updated   time.Time `json:"updated"`
		Delivery  struct {
			State string `json:"state"`
		} `json:"delivery"`
	}
	if json.Unmarshal(line, &h) != nil || piclient.ValidatePaymentID(h.PaymentID) != nil {
		return
	}
	owed := h.Delivery.State == Pending || h.Delivery.State == Exhausted
	s.put(h.PaymentID, segRec{seg: n, off: off, ln: uint32(len(line)), version: h.Version, updated: h.Updated.UnixNano(), owed: owed})
}

// drop forgets removed segments, and the records whose current version
// was in one (a compaction left them out: expired). The caller holds mu,
// and has read the segments that replaced them.
func (s *segStore) drop(gone []uint32) {
	if len(gone) == 0 {
		return
	}
	for id, r := range s.idx {
		if slices.Contains(gone, r.seg) {
			delete(s.idx, id)
		}
	}
	for _, n := range gone {
		sf := s.segs[n]
		if sf.f != nil {
			sf.f.Close()
		}
		if sf.tail != nil {
			s.live.Add(-1)
		}
		delete(s.byName, sf.name)
		s.segs[n] = nil
	}
}

// close finishes the current segment (for tests that stop an instance
// cleanly, and for Close of the last ledger).
func (s *segStore) close() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
}

// kill stops the writer as a killed process would (see seglog.Abandon),
// for tests.
func (s *segStore) kill() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w != nil {
		s.w.Abandon()
		s.w = nil
	}
}
