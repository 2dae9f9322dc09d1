"""The transport boundary: each transport speaks its wire and turns a caller into a principal, nothing more."""
