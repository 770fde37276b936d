package seglog

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkAppendDurable: a completion's record (about 600 bytes) made
// durable, 16 at a time as in make bench's 16 flows, sharing syncs.
func BenchmarkAppendDurable(b *testing.B) {
	w := NewWriter(b.TempDir())
	defer w.Close()
	line := []byte(`{"key":"pi_guard/x/owed/p.json","record":{"paymentId":"p","pad":"` + strings.Repeat("x", 520) + `"}}`)
	b.SetParallelism(8) // 16 on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Append(context.Background(), line, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(w.Syncs())/float64(b.N), "syncs/op")
}
