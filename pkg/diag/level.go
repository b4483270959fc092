package diag

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Level is a log level named debug, info, warn or error (any case).
type Level slog.Level

// Decode implements envconfig.Decoder.
func (l *Level) Decode(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		*l = Level(slog.LevelDebug)
	case "info", "":
		*l = Level(slog.LevelInfo)
	case "warn", "warning":
		*l = Level(slog.LevelWarn)
	case "error":
		*l = Level(slog.LevelError)
	default:
		return fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return nil
}

// Level returns the slog level.
func (l Level) Level() slog.Level { return slog.Level(l) }

// String is the level's name in lower case.
func (l Level) String() string { return strings.ToLower(slog.Level(l).String()) }

// NewLogger is the binaries' JSON logger on w at cfg's level.
func NewLogger(w io.Writer, cfg Config) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.LogLevel.Level()}))
}
