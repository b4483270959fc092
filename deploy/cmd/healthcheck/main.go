// Command healthcheck probes a chat service from inside its own container, which
// (distroless) has no shell, curl or wget:
//
//	healthcheck [-version] [path]
//
// It GETs http://127.0.0.1:<port><path> (path defaults to /readyz), with the port
// taken from CHAT_HTTP_ADDR (default 8080), and exits 0 on 200, 1 otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/chatrt/chat/pkg/buildinfo"
)

func main() {
	version := flag.Bool("version", false, "print the build (version, commit, commit time) and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("healthcheck"))
		return
	}
	path := "/readyz"
	if flag.NArg() > 0 {
		path = flag.Arg(0)
	}
	if err := probe(probeURL(os.Getenv("CHAT_HTTP_ADDR"), path)); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// probeURL maps a listen address (":8080", "0.0.0.0:8080", "[::]:9000") to a
// loopback URL for path.
func probeURL(httpAddr, path string) string {
	host, port := "127.0.0.1", "8080"
	if httpAddr != "" {
		if h, p, err := net.SplitHostPort(httpAddr); err == nil {
			port = p
			if h != "" && h != "0.0.0.0" && h != "::" {
				host = h
			}
		}
	}
	return "http://" + net.JoinHostPort(host, port) + path
}

func probe(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
