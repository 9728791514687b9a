package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
)

// fileState is one rule file as last seen, with its last good source.
type fileState struct {
	path string
	mod  time.Time
	size int64
	// good is the last source that compiled; "" when none ever did.
	good  string
	rules []string
	err   error
}

// Reload loads the rule directory dir (its .sql files; see
// rulesql.SQLFiles) and swaps the running set atomically. Files that
// did not change since the last Reload of the same dir are kept as they
// were. A file that fails to compile keeps its previous good version
// running (or contributes no rule if it never compiled); its error is
// returned (all files' errors joined), logged, counted in
// iotpipe_rules_file_errors and shown by Status. A missing directory is
// an error and changes nothing.
func (p *Processor) Reload(dir string) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	paths, err := rulesql.SQLFiles(dir)
	if err != nil {
		p.metrics.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("reload rules: %w", err)
	}
	if dir != p.dir {
		p.files = map[string]*fileState{}
		p.dir = dir
	}
	next := make(map[string]*fileState, len(paths))
	prev := map[string]string{} // path -> good source before this reload, for changed files
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			continue // removed meanwhile
		}
		old := p.files[path]
		if old != nil && old.mod.Equal(fi.ModTime()) && old.size == fi.Size() {
			next[path] = old
			continue
		}
		f := &fileState{path: path, mod: fi.ModTime(), size: fi.Size()}
		if old != nil {
			f.good, f.rules = old.good, old.rules
		}
		prev[path] = f.good
		src, err := os.ReadFile(path)
		if err == nil {
			_, err = rulesql.Compile(string(src), rulesql.WithFile(path))
		}
		if err != nil {
			f.err = err
		} else {
			f.good = string(src)
		}
		next[path] = f
	}
	set, err := p.build(paths, next)
	if err != nil {
		// Names clash across files: the changed files go back to their
		// previous version and carry the error.
		for path := range prev {
			f := next[path]
			f.good = prev[path]
			if f.err == nil {
				f.err = err
			}
		}
		set, err = p.build(paths, next)
		if err != nil {
			p.files = next
			p.metrics.reloads.WithLabelValues("error").Inc()
			p.noteErrors()
			return fmt.Errorf("reload rules: %w (the running rules are unchanged)", err)
		}
	}
	p.files = next
	p.cur.Store(p.newLoaded(set))
	p.metrics.loaded.Set(float64(len(set.Rules)))
	errs := p.noteErrors()
	if errs != nil {
		p.metrics.reloads.WithLabelValues("error").Inc()
		return errs
	}
	p.metrics.reloads.WithLabelValues("ok").Inc()
	p.log.Info("rules loaded", "dir", dir, "files", len(paths), "rules", len(set.Rules))
	return nil
}

// build compiles the good source of every file into one set; each call
// makes fresh Rule values (a set's rules are never shared with another).
func (p *Processor) build(paths []string, files map[string]*fileState) (*rulesql.Set, error) {
	var all []*rulesql.Rule
	for _, path := range paths {
		f := files[path]
		if f == nil || f.good == "" {
			if f != nil {
				f.rules = nil
			}
			continue
		}
		rules, err := rulesql.Compile(f.good, rulesql.WithFile(path))
		if err != nil {
			return nil, err // cannot happen: good compiled before
		}
		f.rules = f.rules[:0:0]
		for _, r := range rules {
			f.rules = append(f.rules, r.Name)
		}
		all = append(all, rules...)
	}
	return rulesql.NewSet(all)
}

// noteErrors logs and counts the files in error; it returns them joined.
func (p *Processor) noteErrors() error {
	var errs []error
	for _, f := range p.files {
		if f.err != nil {
			errs = append(errs, f.err)
			p.log.Error("rule file not loaded; its previous version keeps running", "file", f.path, "err", f.err, "running_rules", f.rules)
		}
	}
	p.metrics.fileErrors.Set(float64(len(errs)))
	return errors.Join(errs...)
}

// Watch reloads dir whenever one of its .sql files is added, removed or
// changed (polling modification times and sizes every interval; default
// 1s), until ctx ends. It loads dir once at the start. Reload errors are
// logged and shown by Status; Watch itself returns only ctx's error.
func (p *Processor) Watch(ctx context.Context, dir string, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	var last string
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		sig := signature(dir)
		if sig != last {
			last = sig
			if err := p.Reload(dir); err != nil {
				p.log.Warn("rules reload", "dir", dir, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// signature summarises the names, times and sizes of dir's rule files.
func signature(dir string) string {
	paths, err := rulesql.SQLFiles(dir)
	if err != nil {
		return "error: " + err.Error()
	}
	var b []byte
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			continue
		}
		b = fmt.Appendf(b, "%s\x00%d\x00%d\n", path, fi.ModTime().UnixNano(), fi.Size())
	}
	return string(b)
}
