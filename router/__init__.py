"""The strangler proxy: config, matching, balancing, shadowing, breakers, metrics, admin API."""
