"""Images through a model: decoding and encoding (images), how an image is cut (tiles), the one loop that feeds
the model (runner) for one image (pipeline) or a folder's stream (folder), and the choices made per input
(which shipped model, which dtype)."""
