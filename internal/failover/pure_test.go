package failover

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var durationOnly = map[string]bool{"Duration": true, "Nanosecond": true, "Microsecond": true,
	"Millisecond": true, "Second": true, "Minute": true, "Hour": true}

// TestPure keeps the package a pure state machine: it imports no network,
// operating system or concurrency packages (not even transitively for
// net), reads no clock, and starts no goroutines. time is imported only
// for durations.
func TestPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}|{{join .Deps " "}}`, ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	imports, deps, _ := strings.Cut(strings.TrimSpace(string(out)), "|")
	for _, imp := range strings.Fields(imports) {
		switch imp {
		case "net", "os", "os/exec", "syscall", "sync", "sync/atomic", "io", "io/fs", "math/rand", "math/rand/v2", "context", "log", "log/slog":
			t.Errorf("failover imports %s; it must stay pure", imp)
		}
	}
	for _, dep := range strings.Fields(deps) {
		if dep == "net" || strings.HasPrefix(dep, "net/") {
			t.Errorf("failover depends on %s (through an import); it must stay pure", dep)
		}
	}

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: starts a goroutine", fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if x, ok := n.X.(*ast.Ident); ok && x.Name == "time" && !durationOnly[n.Sel.Name] {
					t.Errorf("%s: uses time.%s; only durations are allowed", fset.Position(n.Pos()), n.Sel.Name)
				}
			}
			return true
		})
	}
}
