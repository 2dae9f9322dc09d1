"""The audit trail: the hash-chained log, its writer and the stored records' verification."""
