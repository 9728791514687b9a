package replay

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

func TestEventsHandler(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	srv := httptest.NewServer(EventsHandler(HTTPOptions{Log: h.log, DefaultLimit: 10}))
	defer srv.Close()
	get := func(q url.Values) (*http.Response, []string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	resp, lines := get(url.Values{"thing": {"d2"}})
	if resp.StatusCode != 200 || len(lines) != 3 || resp.Trailer.Get(TrailerEvents) != "3" || resp.Trailer.Get(TrailerTruncated) != "" {
		t.Errorf("d2: %d %q trailers %v", resp.StatusCode, lines, resp.Trailer)
	}
	var ev eventLine
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Thing != "d2" || ev.Topic != "door/d2/state" {
		t.Errorf("line %s: %+v %v", lines[0], ev, err)
	}
	resp, lines = get(url.Values{"topic": {"farm/+/temp"}, "from": {t0.Add(10 * time.Second).Format(time.RFC3339)}})
	if len(lines) != 10 || resp.Trailer.Get(TrailerTruncated) != "limit" {
		t.Errorf("default limit: %d lines, trailers %v", len(lines), resp.Trailer)
	}
	for _, bad := range []url.Values{{"limit": {"x"}}, {"limit": {"1000000"}}, {"from": {"yesterday"}}, {"topic": {"a/#/b"}}, {"type": {"nope"}}} {
		if resp, _ := get(bad); resp.StatusCode != 400 {
			t.Errorf("%v: status %d", bad, resp.StatusCode)
		}
	}
}

func TestReplayHandler(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	srv := httptest.NewServer(ReplayHandler(HTTPOptions{Log: h.log, MaxLimit: 1000}))
	defer srv.Close()
	post := func(body string) (*http.Response, []string) {
		t.Helper()
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lines []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		return resp, lines
	}
	body, _ := json.Marshal(map[string]any{"rules": scenarioRules, "from": t0.Add(2 * time.Second).Format(time.RFC3339), "to": t0.Add(52 * time.Second).Format(time.RFC3339), "limit": 1000})
	resp, lines := post(string(body))
	want, _ := h.replayLines(compileRules(t, scenarioRules), Selection{From: t0.Add(2 * time.Second), To: t0.Add(52 * time.Second)})
	if resp.StatusCode != 200 || len(lines) != len(want)+1 || strings.Join(lines[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Fatalf("status %d, %d lines; replay gives %d outputs:\n%s", resp.StatusCode, len(lines), len(want), strings.Join(lines, "\n"))
	}
	var last struct {
		Summary   Summary
		Truncated string
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last.Summary.Events == 0 || len(last.Summary.Rules) != 6 || last.Truncated != "" {
		t.Errorf("summary line %s: %+v %v", lines[len(lines)-1], last, err)
	}
	body, _ = json.Marshal(map[string]any{"rules": "SELECT a FROM 'farm/#'", "limit": 5})
	_, lines = post(string(body))
	if l := lines[len(lines)-1]; len(lines) != 5 || !strings.Contains(l, `"truncated":"limit"`) || !strings.Contains(l, `"events":5`) {
		t.Errorf("limit: %q", lines)
	}
	for _, bad := range []string{`{"rules": "SELECT nope( FROM 'x'"}`, `not json`, `{"rules": "SELECT a FROM 'x'", "limit": 5000}`} {
		resp, lines := post(bad)
		if resp.StatusCode != 400 || !strings.Contains(lines[0], `"code":400`) {
			t.Errorf("%s: %d %q", bad, resp.StatusCode, lines)
		}
	}
}
