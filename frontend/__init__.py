"""The customer gateway: FastAPI REST + WebSocket streaming in front of the Triton `customer_service` ensemble."""
