// Package ops is the operations channel every chat node answers over NATS: a request
// published to SubjectStats gets one reply from every running node of every service
// (api, persister, pusher) with its build, uptime, readiness and key numbers (Stats).
// The api's admin page gathers them (Gather). No node's address is needed, so it works
// with any number of nodes behind a load balancer, and a node that joins or leaves
// simply answers or does not.
package ops

import (
	"time"
)

// NATS subjects of the operations channel (contract v1.3, issue 15).
const (
	// SubjectPrefix is where operations requests live (chat.ops.>). No stream captures it.
	SubjectPrefix = "chat.ops."
	// SubjectStats: a request (any body, with a reply subject) that every node answers
	// with one JSON Stats.
	SubjectStats = SubjectPrefix + "stats"
)

// Stats is one node's answer to SubjectStats.
type Stats struct {
	Service string `json:"service"` // api, persister or pusher
	// Node names the process: host name and process id ("api-7c9f/1"). Nodes of the
	// all-in-one share it and differ by service.
	Node string `json:"node"`
	// Addr is the node's HTTP address as configured (CHAT_HTTP_ADDR), for humans.
	Addr    string `json:"addr,omitempty"`
	Version string `json:"version"`
	Commit  string `json:"commit"` // "" when the build recorded none
	// StartedAt and UptimeSeconds: when the node started serving, and since how long.
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Ready         bool      `json:"ready"`
	NotReady      string    `json:"not_ready,omitempty"` // why not, when not ready
	Draining      bool      `json:"draining"`
	// Metrics are the node's own Prometheus series (chat_<service>_*, with
	// chat_build_info, go_goroutines and process_resident_memory_bytes): counters and
	// gauges by their series name in the exposition format (`name` or
	// `name{label="value",...}`, labels sorted), histograms as name_sum and name_count.
	// Rates are the difference of two answers over the time between them (At).
	Metrics map[string]float64 `json:"metrics"`
	// Rooms (pushers): the busiest rooms the node holds.
	Rooms []RoomStats `json:"rooms,omitempty"`
	At    time.Time   `json:"at"` // when the node answered
}

// RoomStats is a room as one pusher (or, aggregated by the api, all pushers) sees it.
type RoomStats struct {
	Room        string `json:"room"`
	Subscribers int    `json:"subscribers"`
	// MessagesPerSecond: messages and changes the room received per second, over the
	// last few seconds.
	MessagesPerSecond float64 `json:"messages_per_second"`
}
