"""The multi-core chip: tiles (core + network interface) on two meshes, and the host bridge."""
