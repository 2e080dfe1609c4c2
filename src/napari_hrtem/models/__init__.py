"""Network architectures, the registry of architectures and the shipped networks."""
