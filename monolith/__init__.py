"""The legacy shop: a Django + DRF monolith, tangled on purpose (see monolith/TANGLES.md)."""
