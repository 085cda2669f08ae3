// Package cafixture hands tests a CA initialised on real components (a root
// and an intermediate made by issuer.Init, loaded into an *issuer.Issuer),
// instead of a copy of that setup in every package's tests. It is apart from
// internal/testkit because pkg/issuer's own tests import testkit.
package cafixture
