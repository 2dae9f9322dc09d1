"""The domain boundary: identity, channels, registry and presence, inboxes; plain async Python over the bus."""
