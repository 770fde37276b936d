// Package ledger is what caddy-pi-guard remembers of payments, and how: it
// knows nothing of HTTP routes, Caddy modules or the payment rules, only of
// records, where they live in a certmagic.Storage, and how they survive a
// crash.
//
// The operations a payment needs:
//
//   - Lock / TryLock: the cross-instance lock of one payment (flock(2) on
//     one of 1024 stripe files with file_system storage, else the storage's
//     own lock); KeyedMutex is the in-process lock taken before it.
//   - Load: the payment's Record, or nil.
//   - Save: a completion durably (an owed Record, before anything is
//     forwarded on it), or a delivery (a delivered Record, not synced: losing
//     it costs an idempotent redelivery). A write that fails is kept in
//     memory (Record.Unsaved) and written again from Unsaved.
//   - Owed: the payments whose delivery is pending or exhausted.
//   - WatchList, SaveWatch, DeleteWatch, LoadWatch, Watched: the approved
//     payments the reconciler checks until they complete or settle.
//   - Sweeper: forgets delivered records after their retention.
//
// On disk, under the ledger's prefix, with file_system storage on Linux
// (LayoutSegments, the default):
//
//	log/*.seg           every record, a JSON line each, in a few segment files
//	                    per instance (see segStore; compact.go for retention)
//
// and with other storage modules, the files layout (LayoutFiles), or records
// written before segments:
//
//	owed/<id>.json      a Record while its delivery is pending or exhausted
//	payments/<id>.json  a Record once the app accepted the payment
//	journal/            new owed records' bytes, one fdatasync per batch (file_system on Linux)
//	expiry/             the ids of delivered records, one file per span, for the Sweeper
//
// and in both:
//
//	watch/<id>.json     a WatchEntry
//	resolved/<id>.json  an operator's note on a payment resolved by hand
//
// The JSON of Record and WatchEntry is the on-disk format: keep it
// compatible. docs/segment-store.md says why segments, and how they are
// read by several instances at once.
package ledger
