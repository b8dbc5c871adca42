package gitward.dots

import rego.v1

# A reference broken across lines: regorus reports it at column 0 of the next one.
env := input.resource.
metadata
