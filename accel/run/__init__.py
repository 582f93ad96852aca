"""Images through a model: decoding and encoding, shapes, tiles, folders, and the choices made per input
(which shipped model, which dtype)."""
