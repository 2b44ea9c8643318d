"""Matching: the Hamming indexes over stored hashes and the :class:`~bot.matching.matcher.Matcher`."""
