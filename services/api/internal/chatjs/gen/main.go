// Command gen writes the api's /chat.js from the JavaScript client's module:
// go run ./gen -src <module> -out <script> (run by go generate in package web).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/chatrt/chat/pkg/buildinfo"
	"github.com/chatrt/chat/services/api/internal/chatjs"
)

func main() {
	src := flag.String("src", "", "the ES module ("+chatjs.Source+")")
	out := flag.String("out", "", "the script to write")
	version := flag.Bool("version", false, "print the build and exit")
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.Read().String("gen"))
		return
	}
	if err := run(*src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "chatjs:", err)
		os.Exit(1)
	}
}

func run(src, out string) error {
	if src == "" || out == "" {
		return fmt.Errorf("-src and -out are required")
	}
	module, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("read module: %w", err)
	}
	script, err := chatjs.Script(module)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, script, 0o644); err != nil {
		return fmt.Errorf("write script: %w", err)
	}
	return nil
}
