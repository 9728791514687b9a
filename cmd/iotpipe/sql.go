package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/sinks/clickhouse"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

const sqlUsage = `Usage: iotpipe sql [flags] "SELECT ..." [flags]
       iotpipe sql [flags] --file query.sql

Flags may come before or after the query; "--" ends them (a query that
starts with "-" goes after it).

Runs one query against ClickHouse (the embedded server of a running
` + "`iotpipe run`" + `, or the server --clickhouse names) and prints the result.
It runs as the embedded server's administrative user, whose credentials
it reads from <data-dir>/clickhouse/` + embedded.CredentialsFile + `.

Flags:
  --clickhouse DSN   server to query (default: the embedded server of --data-dir,
                     or $IOTPIPE_CLICKHOUSE)
  --data-dir DIR     data directory of ` + "`iotpipe run`" + ` (default data, or $IOTPIPE_DATA_DIR)
  --file PATH        read the query from PATH ("-" for stdin)
  --format FORMAT    table, csv or json (default table)
  --limit N          print at most N rows (default 0: all)
  --timeout D        give up after D (default 5m)

Examples:
  iotpipe sql "SELECT count() FROM telemetry"
  iotpipe sql --format csv "SELECT thing, max(metrics['temp']) FROM telemetry GROUP BY thing"
`

// sqlMain runs `iotpipe sql`; args are the arguments after "sql". It
// returns the process exit status: 0 on success, 1 when the query or the
// connection failed, 2 for a usage error.
func sqlMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe sql", flag.ContinueOnError)
	dsn := fs.String("clickhouse", os.Getenv("IOTPIPE_CLICKHOUSE"), "server DSN")
	dataDir := fs.String("data-dir", sqlEnvOr("IOTPIPE_DATA_DIR", "data"), "data directory of iotpipe run")
	file := fs.String("file", "", "read the query from this file")
	format := fs.String("format", "table", "table, csv or json")
	limit := fs.Int("limit", 0, "most rows printed (0: all)")
	timeout := fs.Duration("timeout", 5*time.Minute, "query timeout")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, sqlUsage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe sql: %v\n\n%s", err, sqlUsage)
		return 2
	}
	query, err := sqlQuery(pos, *file)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe sql: %v\n\n%s", err, sqlUsage)
		return 2
	}
	var write func(*clickhouse.Result, io.Writer) error
	switch *format {
	case "table":
		write = (*clickhouse.Result).WriteTable
	case "csv":
		write = (*clickhouse.Result).WriteCSV
	case "json":
		write = (*clickhouse.Result).WriteJSON
	default:
		fmt.Fprintf(stderr, "iotpipe sql: unknown --format %q: want table, csv or json\n", *format)
		return 2
	}
	if *dsn == "" {
		creds, err := embedded.ReadCredentials(filepath.Join(*dataDir, "clickhouse"))
		if err != nil {
			fmt.Fprintf(stderr, "iotpipe sql: no --clickhouse DSN, and the embedded server's credentials are not readable: %v; pass --data-dir (iotpipe run's), or --clickhouse for another server\n", err)
			return 1
		}
		*dsn = creds.DSN()
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := clickhouse.Open(ctx, *dsn)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe sql: %v\n", err)
		return 1
	}
	defer conn.Close()
	res, err := clickhouse.Query(ctx, conn, query, *limit)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe sql: %v\n", err)
		return 1
	}
	if err := write(res, stdout); err != nil {
		fmt.Fprintf(stderr, "iotpipe sql: write result: %v\n", err)
		return 1
	}
	return 0
}

// sqlQuery takes the query from the arguments or from file.
func sqlQuery(args []string, file string) (string, error) {
	var q string
	switch {
	case file != "" && len(args) > 0:
		return "", errors.New("give the query as an argument or with --file, not both")
	case file == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return "", fmt.Errorf("read stdin: %w", err)
		}
		q = string(b)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		q = string(b)
	default:
		q = strings.Join(args, " ")
	}
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if q == "" {
		return "", errors.New("no query")
	}
	return q, nil
}

func sqlEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
