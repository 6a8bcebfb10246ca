"""Benches of the host bridge on its own (the ``bridge`` top), with the tiles stood in for by Python."""
