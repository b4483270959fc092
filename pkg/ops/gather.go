package ops

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

// Gather publishes one stats request and collects every node's answer that arrives
// within wait (or until ctx ends), sorted by service, node and address. Answers that do
// not decode are counted in bad and left out.
func Gather(ctx context.Context, nc *nats.Conn, wait time.Duration) (nodes []Stats, bad int, err error) {
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, fmt.Errorf("subscribe %s reply: %w", SubjectStats, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(SubjectStats, inbox, []byte("{}")); err != nil {
		return nil, 0, fmt.Errorf("request %s: %w", SubjectStats, err)
	}
	if err := nc.Flush(); err != nil {
		return nil, 0, fmt.Errorf("request %s: %w", SubjectStats, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			var s Stats
			if json.Unmarshal(m.Data, &s) != nil || s.Service == "" {
				bad++
				continue
			}
			nodes = append(nodes, s)
		case <-timer.C:
			sortNodes(nodes)
			return nodes, bad, nil
		case <-ctx.Done():
			sortNodes(nodes)
			return nodes, bad, errors.Join(ctx.Err(), errors.New("stats gathering interrupted"))
		}
	}
}

func sortNodes(nodes []Stats) {
	slices.SortFunc(nodes, func(a, b Stats) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Node, b.Node), cmp.Compare(a.Addr, b.Addr))
	})
}
