package piguard

import (
	"errors"
	"time"
)

// piLimit bounds the Pi API calls in flight from this handler: a flood of
// requests (each costs at least one call on the app's key) waits briefly for
// a slot and is then refused with a retryable answer, instead of piling up
// calls that Pi may rate-limit for the app as a whole. Per payment, the
// payment's lock already allows one conversation at a time.
type piLimit struct {
	slots   chan struct{}
	wait    time.Duration
	release func() // frees one slot (made once: a method value per call allocates)
}

// errPiBusy is returned when no slot for a Pi call came free in time.
var errPiBusy = errors.New("too many Pi API calls in flight")

// DefaultMaxPiCalls is the default bound on Pi calls in flight.
const DefaultMaxPiCalls = 128

const piLimitWait = 2 * time.Second

func newPiLimit(n int) *piLimit {
	l := &piLimit{slots: make(chan struct{}, n), wait: piLimitWait}
	l.release = func() { <-l.slots }
	return l
}

// acquire takes a slot, waiting at most l.wait, and returns its release.
func (l *piLimit) acquire() (func(), error) {
	if l == nil {
		return func() {}, nil
	}
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		return l.release, nil
	case <-t.C:
		return nil, errPiBusy
	}
}
