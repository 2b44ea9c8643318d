"""Evidence a newsroom can defend: trusted RFC 3161 timestamps over what afterimage archives,
a hash chain of the deletion log's events, rendered post cards, and ``afterimage verify``.

Everything lives in files beside the archive (``<archive>/../evidence/`` unless ``evidence.path`` says
otherwise), not in the state store: the archive is already the one shared, durable place that holds the
evidence, a recipient of a copy of the data folder needs the proofs next to the files they prove, and
``openssl ts -verify`` can be pointed at plain files. The state store stays the source of the events
(:mod:`bot.evidence.stamper` copies them into the chain), so no pipeline or tracker step waits for it.

Modules: :mod:`merkle` (RFC 6962 tree hashes), :mod:`tsa` (requests and token verification with
rfc3161-client), :mod:`ledger` (the folder: queue, chain, batches), :mod:`stamper` (the daemon's job),
:mod:`verify` (``afterimage verify``), :mod:`card` (the post as it looked).
"""
