"""gangplank-sidecar: training metrics from a job's output to Prometheus, off the training path."""

__version__ = "0.1.0"
