"""HTTP gateway for browsers: REST + WebSocket over the orchestrator's gRPC API, and the demo
page (`pantree serve gateway`)."""
