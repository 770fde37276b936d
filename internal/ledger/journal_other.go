//go:build !linux

package ledger

import (
	"context"
	"errors"
)

// journal exists on Linux only (it needs syncfs); elsewhere every new
// record is synced in place.
type journal struct{}

func journalFor(string) *journal { return nil }

func (*journal) append(context.Context, string, []byte) error { return nil }

func (st *Ledger) recoverJournal(context.Context) (int, error) { return 0, nil }

func (*journal) syncCount() int64 { return 0 }

func (*journal) prepare(string) error { return nil }

func (*journal) off() bool { return true }

func (*journal) failure() error { return nil }

var errJournalOff = errors.New("no journal")
