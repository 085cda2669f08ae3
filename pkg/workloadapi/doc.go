// Package workloadapi serves the SPIFFE Workload API (the gRPC service
// SpiffeWorkloadAPI, with the generated code go-spiffe ships) on a local unix
// socket, so services that speak SPIFFE (go-spiffe, java-spiffe, py-spiffe,
// mesh sidecars) get their X.509-SVID, trust bundle and JWT-SVIDs from
// `ca agent` the standard way instead of reading certificate files.
//
// The package holds no credentials of its own: the agent hands it the current
// SVID and bundle (Set*), and a Minter that obtains JWT-SVIDs from the CA.
package workloadapi
