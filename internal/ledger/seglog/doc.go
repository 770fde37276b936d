// Package seglog writes and reads the segment files of the ledger's
// segment store (docs/segment-store.md): append-only files of one record
// per line, each written by one process and read by every instance sharing
// the storage, some while they grow. It knows nothing of records: the
// ledger's segStore indexes the lines.
//
//   - Writer appends lines to its own segments, preallocated as they fill (so
//     that their unwritten tail reads as zero bytes), with one write and at
//     most one fdatasync for each batch of concurrent appends. A segment is
//     locked (flock) while its writer appends to it, and is made under a
//     name that starts with a dot and ends in .new: readers take only names
//     ending in .seg. After SegmentMaxBytes or SegmentMaxAge, idle or not,
//     it is finished: synced, cut to what was written, unlocked.
//   - Scan cuts whole lines out of bytes read from a segment, stopping at the
//     first zero byte (space not written yet, or never: a crash) and before
//     a line still being written.
//   - Tail follows one segment from where it last stopped.
//   - Free and Hold tell whether a segment's writer still holds it, and take
//     it for a compaction.
package seglog
