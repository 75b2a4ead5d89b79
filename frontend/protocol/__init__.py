"""Wire schemas of the gateway's APIs (pydantic models and WebSocket frame builders)."""
