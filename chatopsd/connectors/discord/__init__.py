"""The discord connector: client.py (connection, sending), events.py (pure translation),
render.py (pure markup). See ARCHITECTURE.md."""
