"""Reference applications built on the engine (books, faces)."""
