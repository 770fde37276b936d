package piguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Retention of delivered records.
const (
	// DefaultRetention is how long a delivered payment's record is kept: long
	// enough to answer replays (the Pi SDK retries a completion within
	// minutes; onIncompletePaymentFound can come back days later) and to
	// audit what the guard forwarded.
	DefaultRetention = 30 * 24 * time.Hour
	// retentionInterval is the pause between two sweep passes.
	retentionInterval = time.Minute
	// retentionBatch bounds the records one pass looks at.
	retentionBatch = 4096
	// staleTempAge is when a temporary file of a write that never finished
	// (the process died before its rename) may be removed.
	staleTempAge = time.Hour
)

// retention is the configured retention, or the default.
func (h *Handler) retention() time.Duration {
	if h.Retention > 0 {
		return time.Duration(h.Retention)
	}
	return DefaultRetention
}

// validateRetention refuses a negative retention.
func (h *Handler) validateRetention() error {
	if h.Retention < 0 {
		return fmt.Errorf("pi_guard: retention must be positive, such as 720h, got %s", time.Duration(h.Retention))
	}
	return nil
}

// retentionLoop removes expired delivered records in the background, a
// bounded batch per pass, until ctx (the module's context) is done. Several
// instances sharing storage may sweep at once: removing a record twice is
// harmless.
func (h *Handler) retentionLoop(ctx context.Context) {
	sw := newSweeper(h.store)
	defer sw.close()
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		removed, err := sw.pass(ctx, time.Now().Add(-h.retention()))
		if err != nil {
			h.logger.Warn("could not sweep expired payment records; retrying next pass", zap.Error(err))
		}
		if removed > 0 {
			h.logger.Info("removed expired payment records", zap.Int("records", removed), zap.Duration("retention", h.retention()))
		}
	}
}

// sweeper walks <prefix>/payments/ across passes, removing delivered records
// older than the cutoff. It never touches owed/ records, nor a delivered
// record whose owed copy still exists (a crash came between the two writes:
// the delivery settles it first). A record's age is its last write, which
// for a delivered record is when it was delivered.
type sweeper struct {
	st    *store
	batch int

	// file storage: the open payments directory, whose read offset carries
	// the walk from one pass to the next without listing it whole.
	dir *os.File
	// other storage: the listing being walked.
	keys []string
	next int
}

func newSweeper(st *store) *sweeper { return &sweeper{st: st, batch: retentionBatch} }

func (sw *sweeper) close() {
	if sw.dir != nil {
		sw.dir.Close()
		sw.dir = nil
	}
}

// pass looks at up to batch records and removes the expired ones.
func (sw *sweeper) pass(ctx context.Context, cutoff time.Time) (int, error) {
	if sw.st.w != nil {
		return sw.passFiles(cutoff)
	}
	return sw.passStorage(ctx, cutoff)
}

// passFiles is a pass over file storage, reading the directory in chunks.
func (sw *sweeper) passFiles(cutoff time.Time) (int, error) {
	payments := sw.st.w.fs.Filename(path.Join(sw.st.prefix, "payments"))
	if sw.dir == nil {
		// A new walk: first clear what crashed writes left in owed/.
		removeStaleTemps(sw.st.w.fs.Filename(path.Join(sw.st.prefix, "owed")))
		d, err := os.Open(payments)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		sw.dir = d
	}
	entries, err := sw.dir.ReadDir(sw.batch)
	if err != nil || len(entries) < sw.batch {
		sw.close() // the walk is over (or broken): the next pass starts again
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	removed := 0
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(payments, name)
		if strings.HasSuffix(name, ".tmp") {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
				os.Remove(full)
			}
			continue
		}
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || piclient.ValidatePaymentID(id) != nil {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			continue
		}
		if _, err := os.Stat(sw.st.w.fs.Filename(sw.st.owedKey(id))); !errors.Is(err, fs.ErrNotExist) {
			continue // still owed (or unknown): leave it to the delivery
		}
		if os.Remove(full) == nil {
			removed++
		}
	}
	return removed, err
}

// passStorage is a pass over another storage module, through its listing.
func (sw *sweeper) passStorage(ctx context.Context, cutoff time.Time) (int, error) {
	if sw.next >= len(sw.keys) {
		keys, err := sw.st.s.List(ctx, path.Join(sw.st.prefix, "payments"), false)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		sw.keys, sw.next = keys, 0
	}
	end := min(sw.next+sw.batch, len(sw.keys))
	batch := sw.keys[sw.next:end]
	sw.next = end
	removed := 0
	for _, key := range batch {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		id, ok := strings.CutSuffix(path.Base(key), ".json")
		if !ok || piclient.ValidatePaymentID(id) != nil {
			continue
		}
		info, err := sw.st.s.Stat(ctx, key)
		if err != nil || info.Modified.IsZero() || !info.Modified.Before(cutoff) {
			continue
		}
		if sw.st.s.Exists(ctx, sw.st.owedKey(id)) {
			continue
		}
		if sw.st.s.Delete(ctx, key) == nil {
			removed++
		}
	}
	return removed, nil
}

// removeStaleTemps removes the temporary files of writes that never
// finished. A temporary file is never a record: its rename did not happen,
// so its write never returned success.
func removeStaleTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
