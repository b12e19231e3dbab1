"""One module per ``flagstream`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``."""
