// Package archtest guards the architecture with a test: the import boundaries
// of DESIGN.md (only pkg/hsm speaks PKCS#11; the store and the HSM never import
// the layers above them or net/http) and a package doc comment everywhere.
package archtest
