package main

import (
	"context"
	"io"

	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

// rulesMain implements "iotpipe rules check PATH..." and "iotpipe rules
// test PATH... --input events.jsonl"; args are the arguments after
// "rules". It returns the exit code (0 ok, 1 rule errors or failed run,
// 2 bad usage).
func rulesMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return ruletest.Main(ctx, args, stdout, stderr)
}
