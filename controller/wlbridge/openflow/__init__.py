"""The only code that builds OpenFlow message objects (with fast serialisers)."""
