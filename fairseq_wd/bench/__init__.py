"""A bench's provenance (checksums of what it measured) and the merging of separate runs' bench outputs."""
