"""The seven migration steps as data: what each changes, how it is checked, how to undo it."""
