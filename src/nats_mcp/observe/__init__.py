"""The observability boundary: logs, metrics, traces and anomaly detection, fed by the guard and the bus."""
