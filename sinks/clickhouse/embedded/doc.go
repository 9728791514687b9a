// Package embedded runs a ClickHouse server served by chDB (libchdb.so
// from the npm package @chdb/lib-linux-x64-gnu) as a supervised child
// process: ServeMain is the child's entry point, Start the parent's
// supervisor. chDB is never loaded into the parent process.
package embedded
