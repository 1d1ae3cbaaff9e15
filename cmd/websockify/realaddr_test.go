package main

import (
	"io"
	"net/netip"
	"reflect"
	"testing"
)

func TestTrustedProxies(t *testing.T) {
	tests := []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: []string{"10.0.0.0/8", "127.0.0.1", "::1/128"}, want: []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}},
		{in: []string{" 192.0.2.7 ", "2001:db8::/32"}, want: []string{"192.0.2.7/32", "2001:db8::/32"}},
		{in: []string{"10.1.2.3/8"}, want: []string{"10.0.0.0/8"}},
		{in: []string{"::ffff:10.0.0.1", "::ffff:10.0.0.0/104"}, want: []string{"10.0.0.1/32", "10.0.0.0/8"}},
		{in: []string{"::1"}, want: []string{"::1/128"}},
		{in: nil, want: nil},
		{in: []string{"10.0.0.0/33"}, bad: true},
		{in: []string{"localhost"}, bad: true},
		{in: []string{"10.0.0.0/8", ""}, bad: true},
		{in: []string{"fe80::1%eth0"}, bad: true},
		{in: []string{"10.0.0.0/"}, bad: true},
	}
	for _, tt := range tests {
		got, err := trustedProxies(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("%q: error %v", tt.in, err)
			continue
		}
		var names []string
		for _, p := range got {
			names = append(names, p.String())
		}
		if !tt.bad && !reflect.DeepEqual(names, tt.want) {
			t.Errorf("%q: %q, want %q", tt.in, names, tt.want)
		}
	}
}

func TestRealAddrArgs(t *testing.T) {
	tests := []struct {
		args    []string
		pp      bool
		trusted []netip.Prefix
		wantErr string
	}{
		{args: []string{"--proxy-protocol", "6080", "a:1"},
			wantErr: "--proxy-protocol needs --trusted-proxies: the addresses of the proxies allowed to send PROXY headers"},
		{args: []string{"--trusted-proxies", "10.0.0.0/33", "6080", "a:1"},
			wantErr: `--trusted-proxies: "10.0.0.0/33" is not an address or CIDR prefix`},
		{args: []string{"--proxy-protocol", "--trusted-proxies=127.0.0.1,10.0.0.0/8", "6080", "a:1"}, pp: true,
			trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}},
		{args: []string{"--trusted-proxies", "127.0.0.1", "--trusted-proxies", "::1", "6080", "a:1"},
			trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}},
		// A unix socket's peers are all trusted: no list is needed there.
		{args: []string{"--proxy-protocol", "--unix-listen", "/tmp/websockify-test.sock", "6080", "a:1"}, pp: true},
	}
	for _, tt := range tests {
		opts, err := parseArgs(tt.args, io.Discard)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if opts.ProxyProtocol != tt.pp || !reflect.DeepEqual(opts.TrustedProxies, tt.trusted) {
			t.Errorf("%q: proxy protocol %v, trusted %v", tt.args, opts.ProxyProtocol, opts.TrustedProxies)
		}
	}
}
