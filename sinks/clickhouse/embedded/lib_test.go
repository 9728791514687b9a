package embedded_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// LibPath finds the library where `make deps` installs it for the user
// (XDG_CACHE_HOME honoured, else ~/.cache) from a working directory
// outside any repository, and says where it looked when it is nowhere.
func TestLibPath(t *testing.T) {
	versioned := filepath.Join("iotpipe", "chdb", embedded.ChDBVersion, "libchdb.so")
	stable := filepath.Join("iotpipe", "chdb", "libchdb.so")
	for _, c := range []struct {
		name string
		// files are created below the test's root; env values may use
		// ROOT for it ("-" unsets the variable).
		files   []string
		env     map[string]string
		want    string // path below ROOT, or "" for an error
		wantErr []string
	}{
		{name: "env", files: []string{"lib/libchdb.so"}, env: map[string]string{"IOTPIPE_CHDB_LIB": "ROOT/lib/libchdb.so"}, want: "lib/libchdb.so"},
		{name: "env names a missing file", env: map[string]string{"IOTPIPE_CHDB_LIB": "ROOT/nope.so"},
			wantErr: []string{"IOTPIPE_CHDB_LIB=", "nope.so", "make deps"}},
		{name: "XDG_CACHE_HOME", files: []string{"xdg/" + versioned},
			env: map[string]string{"XDG_CACHE_HOME": "ROOT/xdg", "HOME": "ROOT/home"}, want: "xdg/" + versioned},
		{name: "XDG_CACHE_HOME stable link", files: []string{"xdg/" + stable},
			env: map[string]string{"XDG_CACHE_HOME": "ROOT/xdg", "HOME": "ROOT/home"}, want: "xdg/" + stable},
		{name: "home cache", files: []string{"home/.cache/" + versioned},
			env: map[string]string{"XDG_CACHE_HOME": "-", "HOME": "ROOT/home"}, want: "home/.cache/" + versioned},
		{name: "repository .cache above the working directory", files: []string{"repo/.cache/chdb/" + embedded.ChDBVersion + "/libchdb.so", "repo/cmd/x/keep"},
			env: map[string]string{"XDG_CACHE_HOME": "-", "HOME": "ROOT/home"}, want: "repo/.cache/chdb/" + embedded.ChDBVersion + "/libchdb.so"},
		{name: "nowhere", env: map[string]string{"XDG_CACHE_HOME": "ROOT/xdg", "HOME": "ROOT/home"},
			wantErr: []string{"libchdb.so " + embedded.ChDBVersion + " not found", "xdg/iotpipe/chdb", "make deps", "--clickhouse"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range c.files {
				p := filepath.Join(root, f)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("IOTPIPE_CHDB_LIB", "")
			for k, v := range c.env {
				if v == "-" {
					t.Setenv(k, "")
					os.Unsetenv(k)
					continue
				}
				t.Setenv(k, strings.ReplaceAll(v, "ROOT", root))
			}
			wd := filepath.Join(root, "repo", "cmd", "x")
			if err := os.MkdirAll(wd, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Chdir(wd)
			got, err := embedded.LibPath()
			if c.want != "" {
				if err != nil || got != filepath.Join(root, c.want) {
					t.Fatalf("LibPath() = %q, %v; want %s", got, err, filepath.Join(root, c.want))
				}
				return
			}
			if err == nil {
				t.Fatalf("LibPath() = %q, want an error", got)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), strings.ReplaceAll(w, "ROOT", root)) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
