"""Work queues: broadcast, claim with a lease, complete, fail, the dead-letter queue and their views."""
