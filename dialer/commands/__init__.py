"""One module per `dialer` subcommand; see dialer/cli.py."""
