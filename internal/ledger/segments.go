package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
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
	// newWriter makes a writer: seglog.NewWriter, or one whose disk fails
	// in tests.
	newWriter func(dir string) *seglog.Writer

	// saving is held for reading by a save from its append to its
	// indexing, and for writing by a compaction while it picks and takes
	// segments: a segment it takes holds no line this process has not
	// indexed yet.
	saving sync.RWMutex

	mu     sync.Mutex
	idx    map[string]segRec
	segs   map[uint32]*segFile // by number, in the order found
	next   uint32
	byName map[string]uint32
	tails  map[uint32]*segFile // other writers' segments not known finished
	// listed is log/'s generation file (seglog.GenName) as the last
	// listing found it (nil: none yet), live len(tails): while both say
	// nothing changed, a refresh is one stat (see refresh).
	listed atomic.Pointer[genKey]
	live   atomic.Int32
	// legacy: the files layout's folders were there at the last look;
	// legacyNext is when to look again (Unix ns). See legacyFiles.
	legacy     atomic.Bool
	legacyNext atomic.Int64
	// legacyPinned: this process wrote such a record (legacyWritten).
	legacyPinned atomic.Bool
}

// legacyEvery is how long the answer of legacyFiles is kept.
const legacyEvery = 5 * time.Second

// legacyFiles reports whether the files layout's folders (owed/,
// payments/ under prefixDir) exist, so that a Load that misses in the
// segments still looks there: checked at most every legacyEvery, once they
// are gone a Load costs no lookups of files that are not there. A record
// another process writes there (an instance of an earlier version, or the
// replay of its journal) is looked for within legacyEvery; until then a
// retry of its payment is checked with Pi again, as after a lost record.
func (s *segStore) legacyFiles(prefixDir string) bool {
	now := time.Now().UnixNano()
	if now < s.legacyNext.Load() || s.legacyPinned.Load() {
		return s.legacy.Load() || s.legacyPinned.Load()
	}
	there := false
	for _, dir := range []string{"owed", "payments"} {
		if _, err := os.Stat(filepath.Join(prefixDir, dir)); !errors.Is(err, fs.ErrNotExist) {
			there = true
		}
	}
	s.legacy.Store(there)
	s.legacyNext.Store(now + int64(legacyEvery))
	return there
}

// legacyWritten: this process writes a record of the files layout (the
// replay of an earlier version's journal): Loads look there from now on,
// for the rest of the process.
func (s *segStore) legacyWritten() { s.legacyPinned.Store(true) }

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
	s := &segStore{dir: dir, idx: map[string]segRec{}, segs: map[uint32]*segFile{},
		byName: map[string]uint32{}, tails: map[uint32]*segFile{}, newWriter: seglog.NewWriter}
	return s
}

// writer is the current segment writer; a failed one is replaced, so that
// the next write tries a new segment (the failed one is left as it is).
func (s *segStore) writer() *seglog.Writer {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil || s.w.Failed() {
		s.w = s.newWriter(s.dir)
	}
	return s.w
}

// current is the base name of this process's current segment, or "".
func (s *segStore) current() string {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w == nil {
		return ""
	}
	return s.w.Current()
}

// save appends rec (data is its JSON) and indexes it: durably for an owed
// record, else written without a sync.
func (s *segStore) save(ctx context.Context, rec *Record, data []byte) error {
	s.saving.RLock()
	defer s.saving.RUnlock()
	w := s.writer()
	at, err := w.Append(ctx, data, rec.Owed())
	if errors.Is(err, seglog.ErrSegmentGone) {
		// log/ was removed (by hand, or a restore) with the segment in it:
		// the line is nowhere. Forget what was there, and write it again
		// into a new folder.
		s.forgetAll(w)
		at, err = s.writer().Append(ctx, data, rec.Owed())
	}
	if err != nil {
		return err
	}
	s.indexSaved(rec, data, at)
	return nil
}

// indexSaved indexes the line of rec that save appended at at. The caller
// holds saving (for reading).
func (s *segStore) indexSaved(rec *Record, data []byte, at seglog.At) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n, ok := s.wrote(at, len(data)); ok {
		s.put(rec.PaymentID, segRec{seg: n, off: at.Off, ln: uint32(len(data)), version: rec.Version,
			updated: rec.Updated.UnixNano(), owed: rec.Owed()})
	}
}

// wrote notes a line of ln bytes this process wrote at at, and returns the
// number of its segment; false when the segment is gone already (its first
// line: another instance's compaction may have taken a segment a batch
// filled and finished at once, and then its copy is read with the
// others'). The caller holds mu.
func (s *segStore) wrote(at seglog.At, ln int) (uint32, bool) {
	n, ok := s.byName[at.Segment]
	if !ok {
		if _, err := os.Lstat(filepath.Join(s.dir, at.Segment)); err != nil {
			return 0, false
		}
		n = s.register(at.Segment)
	}
	sf := s.segs[n]
	s.untail(n, sf)
	sf.size = max(sf.size, at.Off+int64(ln)+1)
	return n, true
}

// register adds the segment named base and returns its number. The
// caller holds mu.
func (s *segStore) register(base string) uint32 {
	n := s.next
	s.next++
	s.segs[n] = &segFile{name: base}
	s.byName[base] = n
	return n
}

// untail stops following segment n as another writer's: it is this
// process's (found by a listing before its first append returned). The
// caller holds mu.
func (s *segStore) untail(n uint32, sf *segFile) {
	if sf.tail != nil {
		sf.tail = nil
		delete(s.tails, n)
		s.live.Add(-1)
	}
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
		if !ok {
			s.mu.Unlock()
			return nil, nil
		}
		sf := s.segs[r.seg]
		f, err := s.open(sf)
		s.mu.Unlock()
		if errors.Is(err, fs.ErrNotExist) && try == 0 {
			continue // compacted away since: its copy is in a newer segment
		}
		if err != nil {
			return nil, fmt.Errorf("reading the record of payment %s: %w", id, err)
		}
		buf := make([]byte, r.ln)
		if _, err := f.ReadAt(buf, r.off); err != nil {
			if errors.Is(err, os.ErrClosed) && try == 0 {
				continue // its segment was found removed meanwhile
			}
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

// has reports whether the segments hold a record of payment id, and
// whether it is owed (as of the last refresh).
func (s *segStore) has(id string) (has, owed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.idx[id]
	return ok, r.owed
}

// refresh reads what the other writers appended since the last refresh:
// the segments that appeared in log/ (when its generation file grew, or
// with relist) and the growth of those not known finished. A writer grows
// the generation file once a new segment has its name, before its first
// line is acknowledged, so a record another instance wrote before it
// released a payment's lock is seen by a Load made under that lock. With
// no other writer, a refresh is one fstat.
func (s *segStore) refresh(relist bool) error {
	gen, err := s.genKey()
	if errors.Is(err, fs.ErrNotExist) {
		if _, derr := os.Stat(s.dir); errors.Is(derr, fs.ErrNotExist) {
			s.forgetAll(nil) // nothing written yet, or the folder was removed
			return nil
		}
		relist = true // a folder without one: list it every time
	} else if err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(s.dir, seglog.GenName), err)
	}
	if !relist && s.live.Load() == 0 {
		if last := s.listed.Load(); last != nil && *last == gen {
			return nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var gone []uint32
	if last := s.listed.Load(); relist || last == nil || *last != gen {
		if gone, err = s.list(); err != nil {
			return err
		}
		s.listed.Store(&gen) // read before the listing: a change after it grows it again
	}
	s.readLive()
	s.drop(gone)
	return nil
}

// genKey identifies the state of log/'s generation file: its inode (a
// folder replaced, by a restore, has another) and its size.
type genKey struct {
	ino  uint64
	size int64
}

// genKey returns the generation file's (fs.ErrNotExist when it is not
// there): one stat.
func (s *segStore) genKey() (genKey, error) {
	fi, err := os.Stat(filepath.Join(s.dir, seglog.GenName))
	if err != nil {
		return genKey{}, err
	}
	return genKey{ino: seglog.Inode(fi), size: fi.Size()}, nil
}

// forgetAll forgets every segment when log/ is gone (an operator removed
// it, or restored storage without it): their records are gone with it. The
// writer, whose segment went with it, is retired (see retire), so that the
// next write makes the folder and a segment in it again.
func (s *segStore) forgetAll(failed *seglog.Writer) {
	s.mu.Lock()
	if _, err := os.Stat(s.dir); errors.Is(err, fs.ErrNotExist) && len(s.segs) > 0 {
		gone := make([]uint32, 0, len(s.segs))
		for n := range s.segs {
			gone = append(gone, n)
		}
		s.drop(gone)
	}
	s.listed.Store(nil)
	s.mu.Unlock()
	s.retire(failed)
}

// retire closes the current writer (finishing its segment), so that the
// next write starts another; with failed, only if it is still that one (a
// save whose line was lost, racing others that wrote through a new one).
func (s *segStore) retire(failed *seglog.Writer) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.w != nil && (failed == nil || s.w == failed) {
		s.w.Close()
		s.w = nil
	}
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
		n := s.register(name)
		sf := s.segs[n]
		sf.f, sf.tail = f, seglog.NewTail(f, 0)
		s.tails[n] = sf
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
// then known finished. A read that fails is tried again by the next
// refresh. The caller holds mu.
func (s *segStore) readLive() {
	for n, sf := range s.tails {
		free := seglog.Free(sf.f) // before the reads: what they read then is all there is
		for {
			lines, offs, err := sf.tail.Read()
			for i, line := range lines {
				s.index(line, n, offs[i])
			}
			sf.size = sf.tail.Offset()
			switch {
			case errors.Is(err, seglog.ErrLineTooLong) && free:
				// Not a segment past a line longer than any record: what
				// came before counts.
				s.untail(n, sf)
			case err != nil || !free:
				// A read that failed is tried again by the next refresh; a
				// segment still written is read on then.
			case len(lines) == 0:
				s.untail(n, sf) // read to its end: finished
			default:
				continue // a read may stop short (an error after some lines)
			}
			break
		}
	}
}

// lineHead is what the index needs of a line: read from the JSON's top
// level only, so a request body cannot pass for a field.
type lineHead struct {
	PaymentID string    `json:"payment_id"`
	Version   uint64    `json:"version"`
	Updated   time.Time `json:"updated"`
	Delivery  struct {
		State string `json:"state"`
	} `json:"delivery"`
}

// parseLine reads a line's head; ok is false for a line that is not a
// record of a well-formed payment id (a batch a crash cut short, or bytes
// that are not a segment).
func parseLine(line []byte) (h lineHead, ok bool) {
	if json.Unmarshal(line, &h) != nil || piclient.ValidatePaymentID(h.PaymentID) != nil {
		return h, false
	}
	return h, true
}

// linePaymentID returns the payment id of a line: read from its start
// (`{"payment_id":"…",` is how Save writes every record) without parsing
// the rest, else from its JSON.
func linePaymentID(line []byte) (string, bool) {
	const head = `{"payment_id":"`
	if rest, ok := bytes.CutPrefix(line, []byte(head)); ok {
		if end := bytes.IndexByte(rest, '"'); end > 0 && piclient.ValidatePaymentID(string(rest[:end])) == nil {
			return string(rest[:end]), true
		}
	}
	h, ok := parseLine(line)
	return h.PaymentID, ok
}

// index indexes a line of segment n at off; one that is not a record is
// skipped. The caller holds mu.
func (s *segStore) index(line []byte, n uint32, off int64) {
	h, ok := parseLine(line)
	if !ok {
		return
	}
	r := headRec(h, len(line))
	r.seg, r.off = n, off
	s.put(h.PaymentID, r)
}

// headRec is the index entry of a line whose head is h (its place aside).
func headRec(h lineHead, n int) segRec {
	owed := h.Delivery.State == Pending || h.Delivery.State == Exhausted
	return segRec{ln: uint32(n), version: h.Version, updated: h.Updated.UnixNano(), owed: owed}
}

// lineVersion returns a line's version: read from its end (`,"version":N}`
// is how Save ends every record it writes), else from its JSON.
func lineVersion(line []byte) uint64 {
	const field = `,"version":`
	if i := bytes.LastIndex(line, []byte(field)); i >= 0 && len(line) > 0 && line[len(line)-1] == '}' {
		if v, err := strconv.ParseUint(string(line[i+len(field):len(line)-1]), 10, 64); err == nil {
			return v
		}
	}
	h, _ := parseLine(line)
	return h.Version
}

// drop forgets removed segments, and the records whose current version
// was in one (a compaction left them out: expired). The caller holds mu,
// and has read the segments that replaced them.
func (s *segStore) drop(gone []uint32) {
	if len(gone) == 0 {
		return
	}
	removed := make(map[uint32]bool, len(gone))
	for _, n := range gone {
		removed[n] = true
	}
	for id, r := range s.idx {
		if removed[r.seg] {
			delete(s.idx, id)
		}
	}
	for _, n := range gone {
		sf, ok := s.segs[n]
		if !ok {
			continue // a refresh found it gone first
		}
		if sf.f != nil {
			sf.f.Close()
		}
		s.untail(n, sf)
		delete(s.byName, sf.name)
		delete(s.segs, n)
	}
}

// close finishes the current segment: an instance stopping cleanly, in
// tests.
func (s *segStore) close() { s.retire(nil) }

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
