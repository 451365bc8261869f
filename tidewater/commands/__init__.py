"""One module per `tidewater` subcommand, each with ``add_arguments(parser)`` and ``run(args)``."""
