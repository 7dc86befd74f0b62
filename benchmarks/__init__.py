"""Benchmarks (`make bench`): speed and memory of the VoG audit, never run as tests."""
