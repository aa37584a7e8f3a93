"""Images: safe loading through the format allow-list, the fast decoders, JPEG XL and camera RAW,
and the signatures that find same-pixel, rotated and mirrored copies."""
