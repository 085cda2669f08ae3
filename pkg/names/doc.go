// Package names is the one rule set for the DNS names and SPIFFE IDs this CA
// writes into certificates, so that the policy that grants a name, the issuer
// that signs it and the authorization decisions that read it cannot disagree
// about what a valid name is. SPIFFE IDs follow the SPIFFE ID spec as
// go-spiffe reads it (SplitSPIFFEID); the rest of this comment is about DNS
// names.
//
// The rule, for a private CA whose certificates are verified by TLS stacks
// (crypto/x509, BoringSSL, rustls) and constrained by name constraints:
//
//   - Every DNS SAN (CheckDNSName) is a lower-case LDH host name of at most
//     253 bytes, labels of 1 to 63 letters, digits and hyphens that neither
//     start nor end with a hyphen. No wildcards (this CA issues to one
//     workload at a time), no underscores, no trailing dot, no empty label,
//     no upper case (callers lower-case first, so a name has one spelling in
//     the inventory and in reserved-name checks), and no IP literal (an
//     address belongs in an IP SAN; "10.0.0.1" as a DNS name would dodge
//     IP name constraints).
//   - A name a policy grants a workload (CheckWorkloadDNSName) also has at
//     least two labels. A single label ("orders", "db") means whatever the
//     resolver's search path makes of it, and permitted_dns_domains cannot
//     place it under a domain; the CA/Browser Forum stopped public CAs
//     issuing such internal names for the same reason.
//   - The issuer itself applies CheckDNSName only: it also signs the CA's
//     own server certificate, which names "localhost" for loopback clients,
//     and its reserved-name check (issuer.Config.ReservedDNSNames) is what
//     keeps workloads from claiming that name.
package names
