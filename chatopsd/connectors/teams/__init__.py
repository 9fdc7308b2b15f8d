"""The Microsoft Teams connector, without an inbound port: Azure Relay Hybrid Connections carry
the Bot Service's HTTP requests to an outbound websocket (relay.py); the Bot Framework token is
checked here (auth.py); answers go through the Bot Connector REST API (client.py). events.py
and render.py are pure translation; inbound.py is the per-request pipeline. See docs/teams.md
and ARCHITECTURE.md."""
