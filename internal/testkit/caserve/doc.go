// Package caserve runs the real `ca serve` as a child process and waits until
// it is ready: the one way cmd/ca's end-to-end tests, internal/drills and
// cmd/ca-load start it. It is apart from internal/testkit because ca-load is a
// program, not a test: nothing here takes a testing.TB (testkit.ServeCA is the
// test's wrapper).
package caserve
