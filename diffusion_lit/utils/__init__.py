"""Bottom layer: errors, atomic files, image files, the console; no other project imports."""
