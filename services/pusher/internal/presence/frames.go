package presence

import (
	"bytes"
	"encoding/json"

	cluster "github.com/chatrt/chat/pkg/presence"
	"github.com/chatrt/chat/services/pusher/internal/transport"
)

// stateFrame is a presence, join or leave frame (docs/contract.md, v1.3):
// {"type":typ,"room","online","anonymous","members":[{"name","connections"}]}.
func stateFrame(typ, room string, online, anonymous int, members []cluster.Member) []byte {
	if members == nil {
		members = []cluster.Member{}
	}
	return encode(struct {
		Type      string           `json:"type"`
		Room      string           `json:"room"`
		Online    int              `json:"online"`
		Anonymous int              `json:"anonymous"`
		Members   []cluster.Member `json:"members"`
	}{typ, room, online, anonymous, members})
}

// typingFrame is {"type":"typing","room","name"}.
func typingFrame(room, name string) []byte {
	return encode(struct {
		Type string `json:"type"`
		Room string `json:"room"`
		Name string `json:"name"`
	}{"typing", room, name})
}

// encode makes v a complete server text frame; text stays as is (no HTML escaping).
func encode(v any) []byte {
	var buf bytes.Buffer
	buf.Write(make([]byte, transport.MaxFrameHeader))
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	b := buf.Bytes()
	return transport.Frame(b[:len(b)-1]) // without the encoder's newline
}
