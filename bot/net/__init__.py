"""Networking shared by every stage that reaches third-party URLs: the address policy (:mod:`bot.net.policy`)
and the pinned, policy-checked HTTP client (:mod:`bot.net.client`). It imports nothing of the pipeline, so
watchers and the media stage both build on it without importing each other."""
