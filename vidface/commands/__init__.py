"""One module per `vidface` subcommand; see vidface.cli."""
