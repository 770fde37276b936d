package piguard

import (
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shipped example configurations must adapt cleanly.
func TestShippedCaddyfilesAdapt(t *testing.T) {
	for _, file := range []string{"Caddyfile.example", "examples/run.Caddyfile"} {
		t.Run(file, func(t *testing.T) {
			input, err := os.ReadFile(file)
			require.NoError(t, err)
			adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
			out, warnings, err := adapter.Adapt(input, map[string]any{"filename": file})
			require.NoError(t, err)
			assert.Empty(t, warnings)
			assert.Contains(t, string(out), `"handler":"pi_guard"`)
		})
	}
}
