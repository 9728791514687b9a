package clickhouse

import (
	"strings"
	"testing"
)

func TestMigrationsRender(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantTTL  bool
		wantDays string
		window   string
	}{
		{"defaults", Options{}, false, "", "non_replicated_deduplication_window = 10000"},
		{"ttl", Options{TTLDays: 30, DedupWindow: 500}, true, "INTERVAL 30 DAY", "non_replicated_deduplication_window = 500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Migrations(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) == 0 || ms[0].Version != 1 {
				t.Fatalf("migrations = %+v", ms)
			}
			created := map[string]bool{}
			for _, s := range ms[0].Statements {
				if strings.Contains(s, "{{") {
					t.Errorf("unrendered template in %q", s)
				}
				if strings.Contains(s, "TTL ") != tt.wantTTL || !strings.Contains(s, tt.wantDays) || !strings.Contains(s, tt.window) {
					t.Errorf("statement does not match options %+v:\n%s", tt.opts, s)
				}
				for _, tb := range Tables() {
					if strings.HasPrefix(s, "CREATE TABLE IF NOT EXISTS "+tb.Name+"\n") {
						created[tb.Name] = true
						if !strings.Contains(s, "toDate("+tb.TimeColumn+")") {
							t.Errorf("%s not partitioned by day of %s", tb.Name, tb.TimeColumn)
						}
					}
				}
			}
			for _, tb := range Tables() {
				if !created[tb.Name] {
					t.Errorf("table %s not created", tb.Name)
				}
			}
		})
	}
}

func TestMigrationsRejectNegative(t *testing.T) {
	if _, err := Migrations(Options{TTLDays: -1}); err == nil {
		t.Fatal("want error for negative TTL")
	}
}

func TestSplitStatements(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"-- c\nSELECT 1;\n\nSELECT 2;\n", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT 'a;b'\nFROM t;", []string{"SELECT 'a;b'\nFROM t"}},
		{"SELECT 3", []string{"SELECT 3"}},
		{";\n-- only\n", nil},
	}
	for _, tt := range tests {
		got := SplitStatements(tt.in)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("SplitStatements(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckServerVersion(t *testing.T) {
	tests := []struct {
		v       string
		wantErr string
	}{
		{"26.7.2.1", ""},
		{"23.8.1", ""},
		{"24.1", ""},
		{"23.3.9.1", "too old"},
		{"22.12", "too old"},
		{"banana", "want major.minor"},
		{"", "want major.minor"},
	}
	for _, tt := range tests {
		err := CheckServerVersion(tt.v)
		if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckServerVersion(%q) = %v, want %q", tt.v, err, tt.wantErr)
		}
	}
}

func FuzzCheckServerVersion(f *testing.F) {
	f.Add("26.7.2.1")
	f.Add("x.y")
	f.Fuzz(func(t *testing.T, v string) {
		CheckServerVersion(v)
	})
}
