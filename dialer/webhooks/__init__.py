"""Signed outbound webhooks: signing (pure), address policy, endpoint store, outbox and delivery worker."""
