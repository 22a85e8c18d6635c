"""The steps of an export after the fp32 trace; each adds one entry to the manifest it is given."""
