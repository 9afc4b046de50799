"""Readers for interaction logs and catalogues (RecBole atomic files, plain text, books)."""
