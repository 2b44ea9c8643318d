"""One module per CLI command group; :mod:`bot.cli` registers them. Commands stay thin: they parse options,
call into the core modules and print."""
