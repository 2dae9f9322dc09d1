"""The NATS boundary: connection, embedded server, resource names and setup; nothing above NATS lives here."""
