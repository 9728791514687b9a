package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100
// on every Linux architecture Go supports).
const clockTicks = 100

// procStat is what the benchmark reads from /proc/<pid>/stat.
type procStat struct {
	ppid         int
	utime, stime uint64 // clock ticks
}

// cpu returns the process's user plus system CPU time in seconds.
func (s procStat) cpu() float64 { return float64(s.utime+s.stime) / clockTicks }

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// parseStat parses a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may hold spaces and parentheses itself, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc stat %q: no command name", truncate(b))
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("/proc stat %q: %d fields after the name, want at least 13", truncate(b), len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseUint(f[11], 10, 64)
	st, err3 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procStat{}, fmt.Errorf("/proc stat %q: bad ppid, utime or stime", truncate(b))
	}
	return procStat{ppid: ppid, utime: ut, stime: st}, nil
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// cpuOf returns a process's CPU seconds, or 0 when it cannot be read.
func cpuOf(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.cpu()
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPU      string    `json:"cpu"`
	Cores    int       `json:"cores"`
	MemoryGB float64   `json:"memory_gb"`
	Kernel   string    `json:"kernel"`
	Go       string    `json:"go"`
	Load     []float64 `json:"load_average"` // 1, 5 and 15 minutes
	At       time.Time `json:"at"`
}

// machine reads the machine's description and load average now.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), At: time.Now().UTC(), Load: loadAverage()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemoryGB = kb / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func loadAverage() []float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	var l [3]float64
	if _, err := fmt.Sscanf(string(b), "%f %f %f", &l[0], &l[1], &l[2]); err != nil {
		return nil
	}
	return l[:]
}
