"""Fakes that speak real protocols (a loopback adbd for the Android agent)."""
