// Package hsm holds the CA's signing keys: inside a PKCS#11 token (crypto11;
// SoftHSM in tests) in production, or as PKCS#8 files in the data directory for
// the embedded development default. Every key is handed out as a crypto.Signer,
// found again by an RFC 7512 PKCS#11 URI or a software key URI. It is the only
// package that imports crypto11.
package hsm
