// Package sharedtest locates the project's shared fixtures for tests: the
// folder shared/ that sits beside the repository (as ../shared from the
// repository root, in CI and on developer machines), with the PEWMA
// vectors and the example rules.
package sharedtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Path returns the path of elem under ../shared, the repository root
// being the first directory above the working directory that holds
// go.mod. It fails the test when the root or the path is missing: shared
// fixtures are part of the test, never a reason to skip it.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test directory: cannot locate ../shared")
		}
		dir = parent
	}
	p := filepath.Join(append([]string{filepath.Dir(dir), "shared"}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared test data missing (the shared folder sits beside the repository): %v", err)
	}
	return p
}
