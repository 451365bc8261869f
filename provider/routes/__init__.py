"""The route modules, one blueprint (``bp``) per area; see ``provider.blueprints``."""
