"""Network-on-chip: routers, meshes and their packet layouts."""
