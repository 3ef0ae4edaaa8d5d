"""Real-time controller, safety envelope, policies, gymnasium environments, training, replay."""
