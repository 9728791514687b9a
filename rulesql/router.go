package rulesql

import (
	"strings"
)

// Router finds the rules whose topic filter matches a topic. It is a trie
// over filter levels, so a lookup costs about the depth of the topic (times
// the wildcards met on the way), not the number of rules. A Router is not
// safe for concurrent Add; Match may run concurrently once it is built.
type Router struct {
	root node
	n    int
}

type node struct {
	children map[string]*node
	plus     *node
	// hash holds the rules whose filter ends in '#' here (they match this
	// level and everything below it).
	hash []*Rule
	// rules holds the rules whose filter ends exactly here.
	rules []*Rule
}

// Add routes topic filter's matches to rule. Filters follow MQTT: levels
// split by '/', '+' matches one level, a final '#' matches any number of
// levels (including none); an empty level ('/a/b') is a level.
func (r *Router) Add(rule *Rule) {
	n := &r.root
	filter := rule.Topic
	for {
		level, rest, more := strings.Cut(filter, "/")
		switch level {
		case "#":
			n.hash = append(n.hash, rule)
			r.n++
			return
		case "+":
			if n.plus == nil {
				n.plus = &node{}
			}
			n = n.plus
		default:
			if n.children == nil {
				n.children = map[string]*node{}
			}
			c, ok := n.children[level]
			if !ok {
				c = &node{}
				n.children[level] = c
			}
			n = c
		}
		if !more {
			break
		}
		filter = rest
	}
	n.rules = append(n.rules, rule)
	r.n++
}

// Len returns the number of rules added.
func (r *Router) Len() int { return r.n }

// Match returns the rules matching topic, in the order they were loaded.
func (r *Router) Match(topic string) []*Rule {
	return r.AppendMatch(nil, topic)
}

// AppendMatch appends the rules matching topic to dst (in load order among
// themselves) and returns it; with a reused dst it does not allocate.
func (r *Router) AppendMatch(dst []*Rule, topic string) []*Rule {
	start := len(dst)
	// MQTT: wildcards at the first level do not match topics starting
	// with '$' (system topics).
	sys := strings.HasPrefix(topic, "$")
	dst = r.root.match(dst, topic, true, sys)
	// insertion sort by load order: matches are few.
	m := dst[start:]
	for i := 1; i < len(m); i++ {
		for j := i; j > 0 && m[j].index < m[j-1].index; j-- {
			m[j], m[j-1] = m[j-1], m[j]
		}
	}
	return dst
}

func (n *node) match(dst []*Rule, topic string, first, sys bool) []*Rule {
	if !(first && sys) {
		dst = append(dst, n.hash...)
	}
	level, rest, more := strings.Cut(topic, "/")
	if c, ok := n.children[level]; ok {
		if more {
			dst = c.match(dst, rest, false, sys)
		} else {
			dst = c.end(dst)
		}
	}
	if n.plus != nil && !(first && sys) {
		if more {
			dst = n.plus.match(dst, rest, false, sys)
		} else {
			dst = n.plus.end(dst)
		}
	}
	return dst
}

// end collects the rules at a node reached by the topic's last level:
// exact filters, and 'a/#' which also matches 'a'.
func (n *node) end(dst []*Rule) []*Rule {
	dst = append(dst, n.rules...)
	return append(dst, n.hash...)
}
