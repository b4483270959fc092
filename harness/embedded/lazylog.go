package embedded

import (
	"context"
	"log/slog"
)

// lazyHandler defers With and WithGroup to the inner handler until a record is logged.
// FerretDB calls Logger.With with the SQL query and its arguments for every statement,
// only to log at debug level: a TextHandler formats those attributes at once, which was
// ~4 % of the all-in-one's CPU at 400 posts/s while nothing below error was logged.
type lazyHandler struct {
	inner slog.Handler
	ops   []lazyOp // applied in order to inner by Handle
}

// lazyOp is one WithAttrs (attrs) or WithGroup (group) call.
type lazyOp struct {
	group string
	attrs []slog.Attr
}

func (h *lazyHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	inner := h.inner
	for _, op := range h.ops {
		if op.attrs != nil {
			inner = inner.WithAttrs(op.attrs)
		} else {
			inner = inner.WithGroup(op.group)
		}
	}
	return inner.Handle(ctx, r)
}

func (h *lazyHandler) with(op lazyOp) slog.Handler {
	ops := make([]lazyOp, len(h.ops), len(h.ops)+1)
	copy(ops, h.ops)
	return &lazyHandler{inner: h.inner, ops: append(ops, op)}
}

func (h *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.with(lazyOp{attrs: attrs})
}

func (h *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(lazyOp{group: name})
}
