package piguard

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sourceFacts is what the operations doc may name, read from the root
// package's non-test Go files: every string literal, and the storage folders
// under a store's prefix (path.Join(<...>prefix, "<folder>", ...)).
type sourceFacts struct {
	literals []string
	folders  map[string]bool
}

func readSourceFacts(t *testing.T) sourceFacts {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	kept, err := filepath.Glob("internal/ledger/*.go") // the storage folders
	require.NoError(t, err)
	files = append(files, kept...)
	facts := sourceFacts{folders: map[string]bool{}}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil {
						facts.literals = append(facts.literals, s)
					}
				}
			case *ast.CallExpr:
				if folder, ok := prefixFolder(n); ok {
					facts.folders[folder] = true
				}
			}
			return true
		})
	}
	return facts
}

// prefixFolder recognises path.Join(x.prefix, "folder", ...).
func prefixFolder(call *ast.CallExpr) (string, bool) {
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Join" || len(call.Args) < 2 {
		return "", false
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "path" {
		return "", false
	}
	switch first := call.Args[0].(type) {
	case *ast.Ident:
		if first.Name != "prefix" {
			return "", false
		}
	case *ast.SelectorExpr:
		if first.Sel.Name != "prefix" {
			return "", false
		}
	default:
		return "", false
	}
	lit, ok := call.Args[1].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// docSection returns the lines of the "## <title>" section of doc.
func docSection(t *testing.T, doc, title string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	require.True(t, ok, "docs/operations.md has no section %q", title)
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return strings.Split(rest, "\n")
}

// tableCells returns the cells of the table rows among lines, header and
// separator rows left out.
func tableCells(lines []string) [][]string {
	var rows [][]string
	for _, l := range lines {
		if !strings.HasPrefix(l, "|") || strings.HasPrefix(l, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:] // the header
	}
	return rows
}

var backticked = regexp.MustCompile("`([^`]+)`")

// checkLogMessages checks the "Logs to watch" table of doc: each row's
// Message cell is one message in backticks, which must be a string literal
// of the code, exactly, or the start of one when it ends with " ...". It
// returns the problems.
func checkLogMessages(facts sourceFacts, lines []string) []string {
	var problems []string
	rows := tableCells(lines)
	if len(rows) == 0 {
		return []string{"the Logs to watch section has no table"}
	}
	for _, cells := range rows {
		if len(cells) < 2 {
			problems = append(problems, "a row without a Message column: "+strings.Join(cells, " | "))
			continue
		}
		m := backticked.FindAllStringSubmatch(cells[1], -1)
		if len(m) != 1 || m[0][0] != cells[1] {
			problems = append(problems, "the Message column must be one message in backticks: "+cells[1])
			continue
		}
		msg := m[0][1]
		prefix, isPrefix := strings.CutSuffix(msg, " ...")
		if !slices.ContainsFunc(facts.literals, func(lit string) bool {
			return lit == msg || (isPrefix && strings.HasPrefix(lit, prefix))
		}) {
			problems = append(problems, "no log message in the code reads "+strconv.Quote(msg))
		}
	}
	return problems
}

// checkStorageFolders checks the "Backing up the records" table: every
// pi_guard/<h>/<folder>/ it lists is a folder the code writes under a
// store's prefix, and every such folder is listed (lock names aside).
func checkStorageFolders(facts sourceFacts, lines []string) []string {
	var problems []string
	listed := map[string]bool{}
	folder := regexp.MustCompile(`^pi_guard/<h>/([a-z_]+)/`)
	for _, cells := range tableCells(lines) {
		m := backticked.FindStringSubmatch(cells[0])
		if m == nil {
			problems = append(problems, "a backup row without a key in backticks: "+cells[0])
			continue
		}
		f := folder.FindStringSubmatch(m[1])
		if f == nil {
			continue // not under pi_guard/<h>/ (the file locks)
		}
		listed[f[1]] = true
		if !facts.folders[f[1]] {
			problems = append(problems, "the code keeps nothing under pi_guard/<h>/"+f[1]+"/")
		}
	}
	// Lock names, not stored keys: with file_system storage the locks are
	// files under locks/pi_guard/, listed on their own row.
	lockNames := map[string]bool{"locks": true, "reconciler": true, "compactor": true}
	for f := range facts.folders {
		if !listed[f] && !lockNames[f] {
			problems = append(problems, "the backup table does not list pi_guard/<h>/"+f+"/, which the code writes")
		}
	}
	slices.Sort(problems)
	return problems
}

// docs/operations.md quotes log messages and storage folders an operator
// greps for and backs up: they must be the code's, or the operator looks
// for lines that never come and misses a folder that matters.
func TestOperationsDocMatchesCode(t *testing.T) {
	data, err := os.ReadFile("docs/operations.md")
	require.NoError(t, err)
	doc := string(data)
	facts := readSourceFacts(t)
	require.NotEmpty(t, facts.folders, "found the storage folders in the code")

	assert.Empty(t, checkLogMessages(facts, docSection(t, doc, "Logs to watch")))
	assert.Empty(t, checkStorageFolders(facts, docSection(t, doc, "Backing up the records")))

	// The checks can fail: a doc line with a message or folder that does not
	// exist, or a table without a folder the code writes.
	broken := []string{"| Level | Message | Fields | Do |", "|---|---|---|---|",
		"| warn | `payment redelivery failed` | `next_attempt` | nothing |", "| warn | `payment refused ...` | | prefix |"}
	assert.Equal(t, []string{`no log message in the code reads "payment redelivery failed"`}, checkLogMessages(facts, broken))
	backup := []string{"| Key | Holds |", "|---|---|", "| `pi_guard/<h>/owed/<id>.json` | x |", "| `pi_guard/<h>/nowhere/<id>.json` | x |"}
	problems := checkStorageFolders(facts, backup)
	assert.Contains(t, problems, "the code keeps nothing under pi_guard/<h>/nowhere/")
	assert.Contains(t, problems, "the backup table does not list pi_guard/<h>/watch/, which the code writes")
}
