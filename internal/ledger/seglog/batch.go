package seglog

import (
	"os"
	"sync"
)

// Batcher is a group commit: Commit runs, in one goroutine started when
// needed, on every job queued while the previous batch was committed. The
// ledger's journal and record writer use it too.
type Batcher[J any] struct {
	// Commit writes one batch; set it before the first Add.
	Commit  func([]J)
	mu      sync.Mutex
	queue   []J
	running bool
	idle    *sync.Cond
}

// Add queues job and starts the committer if it is not running.
func (b *Batcher[J]) Add(job J) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queue = append(b.queue, job)
	if !b.running {
		b.running = true
		go b.loop()
	}
}

// loop commits batches until the queue is empty.
func (b *Batcher[J]) loop() {
	for {
		b.mu.Lock()
		batch := b.queue
		b.queue = nil
		if len(batch) == 0 {
			b.running = false
			if b.idle != nil {
				b.idle.Broadcast()
			}
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.Commit(batch)
	}
}

// Pending is the number of jobs queued and not yet taken into a batch.
func (b *Batcher[J]) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// Wait returns once no batch is being committed.
func (b *Batcher[J]) Wait() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.idle == nil {
		b.idle = sync.NewCond(&b.mu)
	}
	for b.running {
		b.idle.Wait()
	}
}

// SyncDir fsyncs a directory, which makes the renames into it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
