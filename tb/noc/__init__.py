"""Network-on-chip verification: reference routing, flit VIP, traffic, scoreboard, environment and tests."""
