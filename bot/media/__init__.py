"""Media handling: safe download of posted media (:mod:`bot.media.fetch`) and video keyframes
(:mod:`bot.media.keyframes`)."""
