"""Command-line flows behind make sim, make bench and make test."""
