// Package server is the CA's HTTP edge: the routers of the HTTPS API listener
// and the plain-HTTP public listener, the one place where errors become
// application/problem+json answers, and the middleware every request passes
// (request id, access log, metrics, panic recovery, body limit).
package server
