"""WallStreetFeds ABM: client-specific tokens as investment vehicles in federated learning."""

__version__ = "0.1.0"
