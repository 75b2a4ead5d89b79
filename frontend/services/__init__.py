"""The gateway's services: Redis-backed state, the Triton client and the conversation that ties them together."""
