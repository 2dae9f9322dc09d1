"""The observability boundary: logs (and later metrics, traces, anomaly detection), fed by the guard and the bus."""
