"""Front-end panels: pure functions that return HTML/text, and thin widget wrappers around them."""
