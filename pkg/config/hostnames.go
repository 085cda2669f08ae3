package config

import (
	"net"
	"net/url"
	"strings"
)

// CAHostNames are the CA's own names, which no workload certificate may
// carry: the hosts of APIURL and PublicURL, the hosts of the listen
// addresses, and the names the API server certificate always has
// ("localhost", and 127.0.0.1). Host names come back lowercased in names,
// IP addresses in ips; unspecified addresses (0.0.0.0, ::) are left out.
func (c *Config) CAHostNames() (names []string, ips []net.IP) {
	seenName, seenIP := map[string]bool{}, map[string]bool{}
	add := func(h string) {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() && !seenIP[ip.String()] {
				seenIP[ip.String()] = true
				ips = append(ips, ip)
			}
			return
		}
		if !seenName[h] {
			seenName[h] = true
			names = append(names, h)
		}
	}
	for _, raw := range []string{c.APIURL, c.PublicURL} {
		if u, err := url.Parse(raw); err == nil {
			add(u.Hostname())
		}
	}
	for _, addr := range []string{c.APIAddr, c.PublicAddr} {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			add(host)
		}
	}
	add("localhost")
	add("127.0.0.1")
	return names, ips
}
