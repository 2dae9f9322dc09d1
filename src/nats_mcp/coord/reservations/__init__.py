"""Reservations: advisory leases on project resources (paths and globs), all or nothing, with fencing tokens."""
