"""jobpool: a Kubernetes-native pool of workers fed by a queue."""

__version__ = "0.1.0"
