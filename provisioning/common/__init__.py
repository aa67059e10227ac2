"""Rules both ends of the fleet wire share: canonical JSON, Ed25519 keys, request signing,
signed configuration documents. Pure: no server library, no kiosk I/O."""
