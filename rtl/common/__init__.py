"""Small building blocks shared by several RTL components."""
