"""Wire formats, pure (no sockets, no sleeping): SSE, OpenAI chat, the lab's WebSocket chat protocol."""
