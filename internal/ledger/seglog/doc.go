// Package seglog reads the segment files of the ledger's planned segment
// store (docs/segment-store.md, step 2): append-only files of one record
// per line, preallocated so that their unwritten tail reads as zero bytes,
// each written by one process and read by every instance sharing the
// storage, some while they grow.
//
// It has no writer yet and nothing in the guard uses it: the store is built
// in steps that each land on their own, and this one is the part every
// other rests on, what a reader may take from a file another process is
// writing, and which line holds a payment's current record:
//
//   - Scan cuts whole lines out of bytes read from a segment, stopping at
//     the first zero byte (space not written yet, or never: a crash) and
//     before a line still being written.
//   - Tail follows one segment from where it last stopped.
//   - Index keeps, per payment, where its record of the highest version is.
package seglog
