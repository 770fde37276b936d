package piguard

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The unknown-subdirective error and the refusal before parsing both come
// from subdirectives: a subdirective parsed but missing from the list would
// be refused, one listed but not parsed would be offered. This holds the list
// to the names UnmarshalCaddyfile compares name with, and to its doc comment.
func TestSubdirectivesListEveryCase(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "caddyfile.go", nil, parser.ParseComments)
	require.NoError(t, err)
	var fn *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "UnmarshalCaddyfile" {
			fn = fd
		}
	}
	require.NotNil(t, fn)

	parsed := map[string]bool{}
	isName := func(e ast.Expr) bool { id, ok := e.(*ast.Ident); return ok && id.Name == "name" }
	literal := func(e ast.Expr) {
		if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
			v, err := strconv.Unquote(bl.Value)
			require.NoError(t, err)
			parsed[v] = true
		}
	}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SwitchStmt:
			if n.Tag != nil && isName(n.Tag) {
				for _, c := range n.Body.List {
					for _, e := range c.(*ast.CaseClause).List {
						literal(e)
					}
				}
			}
		case *ast.BinaryExpr:
			if n.Op == token.EQL && isName(n.X) {
				literal(n.Y)
			}
		}
		return true
	})

	var listed []string
	for name := range parsed {
		listed = append(listed, name)
	}
	slices.Sort(listed)
	want := slices.Clone(subdirectives)
	slices.Sort(want)
	assert.Equal(t, want, listed, "subdirectives and the names UnmarshalCaddyfile parses differ")

	doc := fn.Doc.Text()
	documented := func(name string) bool {
		return regexp.MustCompile(`(?m)^\t    ` + regexp.QuoteMeta(name) + `( |$)`).MatchString(doc)
	}
	for _, name := range subdirectives {
		assert.True(t, documented(name), "UnmarshalCaddyfile's doc comment lacks %s", name)
	}
	assert.False(t, documented("hs256"), "the doc check looks at the block's own level")
}
