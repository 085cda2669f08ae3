// Package jwtsvid exists so that a service can check a JWT-SVID minted by
// workload-ca with a few lines of code and get a precise reason when it
// fails: it fetches and caches the CA's SPIFFE trust bundle (/bundle.json,
// refreshed on its spiffe_refresh_hint and, rate-limited, on an unknown
// kid), and verifies a token's algorithm against an allow-list (never none
// or HMAC), its kid and signature, its expiry, not-before and issued-at with
// leeway, its audience, and that its subject is a SPIFFE ID in the expected
// trust domain.
//
//	src, _ := jwtsvid.NewHTTPSource(jwtsvid.HTTPSourceConfig{URL: "http://ca:8080/bundle.json", TrustDomain: td})
//	v, _ := jwtsvid.NewVerifier(jwtsvid.Config{TrustDomain: td, Source: src})
//	svid, err := v.Verify(ctx, token, "https://api.example.org")
//	if err != nil { log.Print(jwtsvid.ReasonOf(err)) } // token_expired, token_wrong_audience, ...
//
// It depends only on go-jose and go-spiffe, not on the rest of the CA.
package jwtsvid
