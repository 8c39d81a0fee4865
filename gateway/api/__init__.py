"""API route modules. Each exports ROUTES (a list of gateway.routing.Route)."""
