"""The web UI's endpoints, by area: HTTP concerns only (parameters, sessions, status codes), then
a call to the service that does the work. :mod:`prodcat.serving.web.routes` maps paths to them."""
