package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// trustedProxies reads --trusted-proxies: CIDR prefixes and bare addresses
// (a bare one is a prefix of its own), IPv4-mapped IPv6 ones turned into
// IPv4, since the peers they are matched against are.
func trustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, errors.New("--trusted-proxies: empty entry in the list")
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is not an address or CIDR prefix", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("--trusted-proxies: %q is not an address or CIDR prefix", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// realAddrOptions checks --proxy-protocol and --trusted-proxies together:
// a PROXY header is only believed from a trusted proxy, so one needs the
// other, except on a unix socket, whose peers all count as trusted.
func realAddrOptions(proxyProtocol bool, list []string, unixListen bool) ([]netip.Prefix, error) {
	trusted, err := trustedProxies(list)
	if err != nil {
		return nil, err
	}
	if proxyProtocol && len(trusted) == 0 && !unixListen {
		return nil, errors.New("--proxy-protocol needs --trusted-proxies: the addresses of the proxies allowed to send PROXY headers")
	}
	return trusted, nil
}

// trustedLabel names the trusted proxies in the start-up banner.
func trustedLabel(trusted []netip.Prefix) string {
	if len(trusted) == 0 {
		return "the unix socket's peers"
	}
	names := make([]string, len(trusted))
	for i, p := range trusted {
		names[i] = p.String()
	}
	return strings.Join(names, ", ")
}
