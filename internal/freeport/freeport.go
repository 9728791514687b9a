// Package freeport finds free TCP ports on 127.0.0.1 for servers a test
// or benchmark starts as child processes (which must be told a port).
package freeport

import (
	"fmt"
	"net"
)

// Ports asks the kernel for n distinct free TCP ports on 127.0.0.1 (all
// held open until every one is found, so none is returned twice).
func Ports(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
