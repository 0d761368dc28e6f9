"""pysync sync server: a stateless ASGI app in front of DynamoDB."""
