//go:build unix

package ledger

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlockLockerExcludes(t *testing.T) {
	l := newFlockLocker(t.TempDir())
	assertExcludes(t, l)
	entries, err := os.ReadDir(l.dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "one stripe file, kept for the next lock; nothing created per lock")
}

// A lock opens its stripe file once: the next lock on it reuses the open
// file, and another process is still excluded (see
// TestFlockLockerDiesWithItsProcess).
func TestFlockLockerKeepsItsFileOpen(t *testing.T) {
	l := newFlockLocker(t.TempDir())
	name := "pi_guard/x/locks/kept"
	unlock, err := l.lock(t.Context(), name)
	require.NoError(t, err)
	kept := flockSlot(l.path(name)).f
	require.NotNil(t, kept)
	unlock()
	unlock() // twice is once
	unlock, err = l.lock(t.Context(), name)
	require.NoError(t, err)
	assert.Same(t, kept, flockSlot(l.path(name)).f, "no new open(2)")
	unlock()
}

func TestFlockLockerHonoursContextAndTry(t *testing.T) {
	l := newFlockLocker(t.TempDir())
	unlock, err := l.tryLock("pi_guard/x/locks/busy")
	require.NoError(t, err)
	require.NotNil(t, unlock)
	again, err := l.tryLock("pi_guard/x/locks/busy")
	require.NoError(t, err)
	assert.Nil(t, again, "held in this process")
	// Another locker over the same directory (a second handler after a
	// config reload) is excluded too.
	other := newFlockLocker(l.dir[:len(l.dir)-len("/locks/pi_guard")])
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = other.lock(ctx, "pi_guard/x/locks/busy")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	unlock()
	got, err := other.tryLock("pi_guard/x/locks/busy")
	require.NoError(t, err)
	require.NotNil(t, got)
	got()
	// The reconciler's lock has a file of its own, never a payment's stripe.
	assert.NotEqual(t, l.path("pi_guard/x/reconciler"), l.path("pi_guard/x/locks/busy"))
	assert.Contains(t, l.path("pi_guard/x/reconciler"), "reconciler")
}

// A process that dies holding a lock (kill -9) loses it at once: no stale
// lock to expire, nothing to take over. The holder is this test binary run
// again as a child.
func TestFlockLockerDiesWithItsProcess(t *testing.T) {
	if dir := os.Getenv("PI_GUARD_FLOCK_HOLDER"); dir != "" {
		unlock, err := newFlockLocker(dir).lock(context.Background(), "pi_guard/x/locks/pay")
		if err != nil || unlock == nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("held\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFlockLockerDiesWithItsProcess$")
	cmd.Env = append(os.Environ(), "PI_GUARD_FLOCK_HOLDER="+root)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)

	l := newFlockLocker(root)
	got, err := l.tryLock("pi_guard/x/locks/pay")
	require.NoError(t, err)
	assert.Nil(t, got, "held by the other process")
	// Again through the file this process keeps open between its locks.
	require.NotNil(t, flockSlot(l.path("pi_guard/x/locks/pay")).f, "the stripe file is kept open")
	got, err = l.tryLock("pi_guard/x/locks/pay")
	require.NoError(t, err)
	assert.Nil(t, got, "held by the other process")

	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	_ = cmd.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	start := time.Now()
	unlock, err := l.lock(ctx, "pi_guard/x/locks/pay")
	require.NoError(t, err, "the dead process's lock is gone")
	assert.Less(t, time.Since(start), time.Second, "at once, not after an expiry")
	unlock()
}
