// Package storeopen turns a database URL (CA_DATABASE_URL) into a store.Store
// and runs the schema migrations for it. It is the one place that knows both
// implementations; neither of them imports it.
package storeopen
