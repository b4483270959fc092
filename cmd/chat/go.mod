module github.com/chatrt/chat/cmd/chat

go 1.26.0

require github.com/chatrt/chat/pkg v0.0.0

replace github.com/chatrt/chat/pkg => ../../pkg
