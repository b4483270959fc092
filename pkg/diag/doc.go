// Package diag is what every binary (the three services and the all-in-one) shares for
// looking inside a running process: the log level (CHAT_LOG_LEVEL) and an optional
// profiling endpoint serving net/http/pprof (CHAT_DEBUG_ADDR, loopback only unless
// CHAT_DEBUG_ALLOW_REMOTE is set).
package diag

// Config is read with envconfig.Process("chat", &cfg) in each binary's main.
type Config struct {
	// LogLevel is the least level logged: debug, info, warn or error (CHAT_LOG_LEVEL).
	LogLevel Level `envconfig:"LOG_LEVEL" default:"info"`
	// DebugAddr is where net/http/pprof is served (CHAT_DEBUG_ADDR); empty: nowhere.
	DebugAddr string `envconfig:"DEBUG_ADDR"`
	// DebugAllowRemote lets DebugAddr be a non-loopback address (CHAT_DEBUG_ALLOW_REMOTE).
	// Profiles reveal memory contents and cost CPU: by default the process refuses to
	// start with the endpoint reachable from other machines.
	DebugAllowRemote bool `envconfig:"DEBUG_ALLOW_REMOTE"`
}
