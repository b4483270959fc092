package clientip

import (
	"net/http/httptest"
	"testing"
)

func TestClientKey(t *testing.T) {
	c, err := New([]string{"10.0.0.0/8", "192.0.2.1", ""})
	if err != nil {
		t.Fatal(err)
	}
	none, _ := New(nil)
	cases := []struct {
		name   string
		res    Resolver
		remote string
		xff    []string
		want   string
	}{
		{"peer", none, "198.51.100.7:1234", nil, "198.51.100.7"},
		{"untrusted peer ignores header", none, "198.51.100.7:1234", []string{"203.0.113.9"}, "198.51.100.7"},
		{"untrusted peer with trust list", c, "198.51.100.7:1234", []string{"203.0.113.9"}, "198.51.100.7"},
		{"trusted peer", c, "192.0.2.1:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"rightmost untrusted", c, "10.1.2.3:80", []string{"1.1.1.1, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"spoofed left part ignored", c, "10.1.2.3:80", []string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"},
		{"garbage stops the walk", c, "10.1.2.3:80", []string{"203.0.113.9, nonsense"}, "10.1.2.3"},
		{"trusted peer no header", c, "10.1.2.3:80", nil, "10.1.2.3"},
		{"ipv6 by /64", none, "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		{"mapped v4", none, "[::ffff:198.51.100.7]:1", nil, "198.51.100.7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/messages", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.res.Key(r); got != tc.want {
				t.Fatalf("Key = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := New([]string{"not-an-ip"}); err == nil {
		t.Fatal("bad trusted proxy accepted")
	}
}

func TestResolverBehindProxies(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/ws", nil)
	for _, c := range []struct{ remote, xff, want string }{
		{"127.0.0.1:1", "203.0.113.9, 10.1.1.1", "203.0.113.9"},
		{"198.51.100.1:1", "203.0.113.9", "198.51.100.1"},
		{"[2001:db8::1]:1", "", "2001:db8::/64"},
		{"127.0.0.1:1", "junk", "127.0.0.1"},
	} {
		req.RemoteAddr = c.remote
		req.Header.Set("X-Forwarded-For", c.xff)
		if got := r.Key(req); got != c.want {
			t.Errorf("%s %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	if _, err := New([]string{"nope"}); err == nil {
		t.Fatal("bad proxy accepted")
	}
}
