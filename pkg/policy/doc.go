// Package policy exists so that the one policy file -- which token issuers are
// trusted, which claims earn which SPIFFE ID, who may operate the CA -- is
// parsed, validated and evaluated in one place, offline-testable and atomically
// reloadable.
//
// The file (YAML, unknown fields are errors; its version is the hex SHA-256 of
// its bytes):
//
//	trust_domain: example.org            # every issued SPIFFE ID is in it
//	permitted_dns_domains: ["*.prod.internal"]
//	token_issuers:
//	  - name: github                     # referred to by rules and roles
//	    issuer: https://token.actions.githubusercontent.com   # exact iss, https, unique
//	    audience: https://ca.example.org
//	    # key source: OIDC discovery by default, or jwks_url, or jwks_file
//	    # (relative to the policy file); optional leeway (<= 5m) and
//	    # max_token_age (<= 48h) override the verifier's defaults.
//	    require_jti: true                # optional: refuse tokens without jti (token_malformed)
//	rules:                               # first match wins; no match is a denial
//	  - name: any-repo-ci
//	    issuer: github
//	    when: claims.repository_owner == "acme"          # CEL over claims, must be bool
//	    spiffe_id: spiffe://example.org/ci/{{claims.repository|path}}  # "acme/payments": |path spans segments
//	    dns_names: ['{{claims.job}}.prod.internal']       # optional
//	    max_ttl: 15m                     # required, <= 720h
//	    ttl: 10m                         # default TTL, <= max_ttl; defaults to max_ttl
//	    key_types: [ecdsa-p256]          # default: all of DefaultKeyTypes
//	    reauthenticate_after: 720h       # a lineage renews this long after its enrollment (default 720h, <= 8760h)
//	renewal:                             # optional
//	  on_reuse: deny                     # deny (default) or revoke_lineage: renewing an already-renewed certificate
//	roles:                               # auditor, revoker, admin (admin implies both)
//	  - {role: revoker, issuer: corp-idp, when: '"pki-revokers" in claims.groups'}
//	  - {role: admin, client_spiffe_id: spiffe://example.org/ops/break-glass}
//	jwt:                                 # optional: JWT-SVIDs (POST /v1/jwt)
//	  ttl: 5m                            # default lifetime (default 5m, <= max_ttl)
//	  max_ttl: 15m                       # <= 1h (default 5m)
//	  audiences:                         # optional; without entries any audience
//	    - spiffe_id: spiffe://example.org/prod/*      # exact ID or path prefix /*
//	      allow: [https://api.example.org]            # exact audiences or "*"
//
// Templates accept only literal text and {{claims.<path>}} placeholders (a key
// that is not an identifier is written claims["kubernetes.io"].namespace). A
// value spliced into a SPIFFE ID is exactly one path segment: a value with
// '/', or "." or "..", is denied (policy_denied, check spiffe_id_segment), so
// that two placeholders cannot splice one identity out of different claims.
// A placeholder written {{claims.<path>|path}} may span segments
// ("acme/payments"); a spiffe_id may have one such placeholder, and no two
// placeholders may share a path segment ("{{claims.a}}-{{claims.b}}" is
// refused at load: "a-b"+"c" and "a"+"b-c" would be one identity). Either way
// every segment must be non-empty, not "." or "..", and of [a-zA-Z0-9._-]. A
// value spliced into a DNS name must be exactly one label of [a-zA-Z0-9-] and
// is lower-cased (|path is refused there).
//
// Under every rule sits a hard name guard (smallstep's X.509 name-policy
// engine): the SPIFFE ID's trust domain must be trust_domain and every DNS
// name must be inside permitted_dns_domains. With that engine, "*.prod.internal"
// permits exactly one label below prod.internal (a.prod.internal, not
// a.b.prod.internal), and "prod.internal" permits only that name; list each
// level you issue under. With no permitted_dns_domains, no DNS names at all
// can be issued.
package policy
