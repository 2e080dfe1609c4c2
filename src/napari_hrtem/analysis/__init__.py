"""Analysis: support filter, drift alignment, network inference, consensus, comparison and metrics."""
