"""One CIM core: controller, register map, payload layouts and the analog-macro boundary."""
