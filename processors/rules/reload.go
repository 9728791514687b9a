package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
)

// fileState is one rule file as last seen: its source on disk and the
// version of it that runs.
type fileState struct {
	path string
	mod  time.Time
	size int64
	// src is the source on disk when it compiled on its own ("" when
	// it did not); srcRules are its rules, for name checks only.
	src      string
	srcRules []*rulesql.Rule
	// good is the version that runs ("" when none does): src once it
	// was taken, or the last version that was; rules are its names.
	good  string
	rules []string
	// err says why src does not run: it does not compile, or a rule
	// name in it is another file's.
	err error
}

// Reload loads the rule directory dir (its .sql files; see
// rulesql.SQLFiles) and swaps the running set atomically. Files that
// did not change since the last Reload of the same dir are kept as they
// were. A file that fails to compile keeps its last good version
// running (or contributes no rule if it never compiled); with
// Options.LastGoodDir, that version outlives a restart. A file whose
// new version uses a rule name another running file has is refused the
// same way, and taken as soon as the name is free (on the next Reload,
// even when that file itself did not change); a clash never holds back
// another file. Errors are returned (all files' errors joined), logged,
// counted in iotpipe_rules_file_errors and shown by Status. A missing
// directory is an error and changes nothing.
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
		next[path] = p.readFile(path, fi, old)
	}
	p.choose(paths, next)
	set, err := p.build(paths, next)
	if err != nil {
		p.files = next
		p.metrics.reloads.WithLabelValues("error").Inc()
		p.noteErrors()
		return fmt.Errorf("reload rules: %w (the running rules are unchanged)", err)
	}
	p.files = next
	p.keepGood(paths, next)
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

// readFile reads and compiles a new or changed file. It keeps old's
// running version; a file first seen that does not compile runs its
// kept last good version, if there is one.
func (p *Processor) readFile(path string, fi os.FileInfo, old *fileState) *fileState {
	f := &fileState{path: path, mod: fi.ModTime(), size: fi.Size()}
	if old != nil {
		f.good, f.rules = old.good, old.rules
	}
	b, err := os.ReadFile(path)
	if err == nil {
		f.srcRules, err = rulesql.Compile(string(b), rulesql.WithFile(path))
	}
	if err == nil {
		f.src = string(b)
		return f
	}
	f.err = err
	if old != nil {
		return f
	}
	kept, ok := p.lastGood(path)
	if !ok {
		return f
	}
	f.good = kept
	f.err = fmt.Errorf("%w (its last good version runs, kept in %s)", err, p.keptPath(path))
	p.log.Warn("rule file does not compile; running its last good version", "file", path, "kept", p.keptPath(path), "err", err)
	return f
}

// choose decides which version of each file runs. Every new version
// that compiled is taken unless a rule name in it is used by another
// file's version that runs: then the new version is refused (the later
// file in path order, when both are new) and keeps an error naming the
// clash, and its file runs what it ran before. Refusing only ever puts
// back versions that ran together, so this ends.
func (p *Processor) choose(paths []string, files map[string]*fileState) {
	taken := map[string]bool{} // paths whose new version is taken
	for _, path := range paths {
		if f := files[path]; f != nil && f.src != "" && f.src != f.good {
			taken[path] = true
		}
	}
	for {
		refuse, clash := "", error(nil)
		owner := map[string]string{} // rule name -> path
	scan:
		for _, path := range paths {
			f := files[path]
			if f == nil {
				continue
			}
			for _, r := range f.version(taken[path]) {
				o, ok := owner[r.name]
				if !ok {
					owner[r.name] = path
					continue
				}
				switch {
				case taken[path]:
					refuse, clash = path, clashErr(f.path, r, o)
				case taken[o]:
					of := files[o]
					refuse, clash = o, clashErr(o, of.posOf(r.name), path)
				default: // old versions that clash: the later one stops
					refuse, clash = path, clashErr(f.path, r, o)
					f.good, f.rules = "", nil
				}
				break scan
			}
		}
		if refuse == "" {
			break
		}
		delete(taken, refuse)
		files[refuse].err = clash
	}
	for path := range taken {
		f := files[path]
		f.good, f.rules, f.err = f.src, f.rules[:0:0], nil
		for _, r := range f.srcRules {
			f.rules = append(f.rules, r.Name)
		}
	}
}

// ruleRef is a rule name and where it is declared.
type ruleRef struct {
	name string
	pos  rulesql.Pos
}

// version lists the rules of f's new version (taken) or of the running one.
func (f *fileState) version(taken bool) []ruleRef {
	var out []ruleRef
	if taken {
		for _, r := range f.srcRules {
			out = append(out, ruleRef{r.Name, r.Pos})
		}
		return out
	}
	for _, n := range f.rules {
		out = append(out, ruleRef{name: n})
	}
	return out
}

// posOf is the rule named name in f's new version.
func (f *fileState) posOf(name string) ruleRef {
	for _, r := range f.srcRules {
		if r.Name == name {
			return ruleRef{r.Name, r.Pos}
		}
	}
	return ruleRef{name: name}
}

// clashErr is the error of file's new version whose rule r is named as
// one of other's.
func clashErr(file string, r ruleRef, other string) error {
	return &rulesql.Error{File: file, Pos: r.pos, Msg: fmt.Sprintf(
		"rule name %s is already used in %s; this file's previous version (if any) keeps running until the name is free", r.name, other)}
}

// build compiles the running version of every file into one set; each
// call makes fresh Rule values (a set's rules are never shared with
// another).
func (p *Processor) build(paths []string, files map[string]*fileState) (*rulesql.Set, error) {
	var all []*rulesql.Rule
	for _, path := range paths {
		f := files[path]
		if f == nil || f.good == "" {
			continue
		}
		rules, err := rulesql.Compile(f.good, rulesql.WithFile(path))
		if err != nil {
			return nil, err // cannot happen: good compiled before
		}
		all = append(all, rules...)
	}
	return rulesql.NewSet(all)
}

// keptPath is where the last good version of the rule file path is kept.
func (p *Processor) keptPath(path string) string {
	return filepath.Join(p.opts.LastGoodDir, filepath.Base(path))
}

// lastGood returns the kept last good version of path, if it compiles.
func (p *Processor) lastGood(path string) (string, bool) {
	if p.opts.LastGoodDir == "" {
		return "", false
	}
	b, err := os.ReadFile(p.keptPath(path))
	if err != nil {
		return "", false
	}
	if _, err := rulesql.Compile(string(b), rulesql.WithFile(path)); err != nil {
		p.log.Warn("kept rule file does not compile; ignored", "file", p.keptPath(path), "err", err)
		return "", false
	}
	return string(b), true
}

// keepGood makes Options.LastGoodDir hold the running version of each
// file, and nothing for files that run none or are gone.
func (p *Processor) keepGood(paths []string, files map[string]*fileState) {
	dir := p.opts.LastGoodDir
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.log.Warn("cannot keep the last good rule files", "dir", dir, "err", err)
		return
	}
	want := map[string]string{}
	for _, path := range paths {
		if f := files[path]; f != nil && f.good != "" {
			want[filepath.Base(path)] = f.good
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok && !e.IsDir() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, src := range want {
		if err := writeKept(filepath.Join(dir, name), src); err != nil {
			p.log.Warn("cannot keep the last good rule file", "file", name, "dir", dir, "err", err)
		}
	}
}

// writeKept writes src to path unless it holds src already, through a
// synced temporary file renamed over it.
func writeKept(path, src string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == src {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(src); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
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
