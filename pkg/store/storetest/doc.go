// Package storetest is the conformance suite every store.Store implementation
// must pass, so that Postgres and SQLite behave alike to the rest of the CA.
// Only tests import it.
package storetest
