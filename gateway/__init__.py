"""HTTP gateway for browsers (REST + WebSocket); see its own issue."""
