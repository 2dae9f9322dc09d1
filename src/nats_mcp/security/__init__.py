"""The security pipeline: principals, authentication, policy, the guard, limits and the audit chain."""
