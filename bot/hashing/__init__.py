"""Image hashing: safe decoding, one preprocessing path, and the signals the matcher indexes.

Every stored and every query image goes through :func:`bot.hashing.decode.decode_image` and
:func:`bot.hashing.stage.hash_image` (once per still), so a known image and a later copy of it are hashed the same way.
"""
