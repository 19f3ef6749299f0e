"""Online scoring: the API's models and the service behind the inference Lambda."""
