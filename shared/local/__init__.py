"""The local stack behind ``lectern dev``: never imported by a deployed function."""
