"""Change-data-capture: sources, snapshot, transport, sinks, checkpoints, verification."""
