// Package hold exists so that containing a compromised workload has one
// owner: it places, releases and lists identity holds (a SPIFFE ID that gets
// no new certificates, renewals or JWT-SVIDs until the hold ends), and gives
// enrollment, renewal and JWT minting the one check they call. Holds live in
// the store, so every replica sees a hold as soon as it is committed.
package hold
