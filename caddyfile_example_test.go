package piguard

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// Every Caddyfile the project shows (the shipped files and each caddyfile
// block of README.md and docs/) is `caddy fmt`-clean, so that Caddy does not
// warn about it at every start, and adapts.
func TestShownCaddyfilesAreFormatted(t *testing.T) {
	shown := map[string][]byte{}
	for _, file := range []string{"Caddyfile.example", "examples/run.Caddyfile"} {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		shown[file] = data
	}
	docs, _ := filepath.Glob("docs/*.md")
	for _, file := range append([]string{"README.md"}, docs...) {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		for i, m := range regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllSubmatch(data, -1) {
			shown[fmt.Sprintf("%s block %d", file, i+1)] = m[1]
		}
	}
	require.NotEmpty(t, shown)
	for name, input := range shown {
		assert.Equal(t, string(input), string(caddyfile.Format(input)), "%s is not caddy fmt-clean", name)
		adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
		_, warnings, err := adapter.Adapt(input, map[string]any{"filename": name})
		assert.NoError(t, err, name)
		assert.Empty(t, warnings, name)
	}
}
