package embedded

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
)

// FreePorts reserves n distinct free loopback ports (released on return: another
// process could take one before its member binds it, which then fails to start). They
// come from below the kernel's ephemeral range (ip_local_port_range), which the kernel
// never hands out as a connection's source port: a server stopped in a fault test then
// finds its port free when it starts again. (From the ephemeral range, a topology NATS
// node's monitor port was taken by an outgoing connection while the node was down, on a
// machine busy with other load tests, and the node could not come back.)
func FreePorts(n int) ([]int, error) {
	lo, hi := portWindow()
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n; tries++ {
		if tries > 50*n {
			return nil, fmt.Errorf("free port: no %d free ports in %d-%d", n, lo, hi-1)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken
		}
		defer l.Close()
		out = append(out, p)
	}
	return out, nil
}

// portWindow is [lo, hi): up to 12,000 ports right below the ephemeral range.
func portWindow() (lo, hi int) {
	hi = 32768 // Linux's default low end of ip_local_port_range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var a, z int
		if _, err := fmt.Sscan(string(b), &a, &z); err == nil && a > 2048 {
			hi = a
		}
	}
	return max(1024, hi-12000), hi
}
