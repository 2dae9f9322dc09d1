"""The agent registry: identities, handles, registration, presence and who may see whom."""
