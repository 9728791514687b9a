// Package replay asks the log questions: it reads the events topic by
// time, thing, topic and type (iotpipe events), runs rule files over a
// stretch of history with every effect off (iotpipe replay, --diff,
// --trace), exports what it read or derived to Parquet, serves the same
// over HTTP for the dashboard, and rebuilds processors' state from the
// changelog or the events (iotpipe rebuild).
//
// It is a tool over the log and the processor runtime, not a stage of
// the pipeline: it never produces to a topic other than the changelog
// of a rebuild, and never reaches a sink. Replay runs the rules
// processor itself (processors/rules) in a processors.Harness with
// DryRun set, so what it prints is what the stream would have done,
// from empty state and timed by the events' receive times (ticks as
// ruletest.TickAt: the same outputs iotpipe rules test gives for the
// same events exported with iotpipe events --json).
package replay
